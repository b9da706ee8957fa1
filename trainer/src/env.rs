//! Object-safe environments over the runtime's `no_std` plants, so the
//! trainer can step N plants chosen at run time (through the
//! [`Registry`](crate::registry::Registry)).

use tinyppo_runtime::plants::Plant;
use tinyppo_runtime::rng::DefaultRng;

/// A plant behind a dynamic interface (slices instead of const arrays).
pub trait Env: Send {
    /// Plant name.
    fn name(&self) -> &'static str;
    /// Observation dimension.
    fn obs_dim(&self) -> usize;
    /// Action dimension.
    fn act_dim(&self) -> usize;
    /// Lower action bounds.
    fn action_low(&self) -> Vec<f32>;
    /// Upper action bounds.
    fn action_high(&self) -> Vec<f32>;
    /// The action applied when the policy cannot act.
    fn safe_action(&self) -> Vec<f32>;
    /// Time limit in steps.
    fn max_episode_steps(&self) -> u32;
    /// New episode; writes the first observation.
    fn reset(&mut self, rng: &mut DefaultRng, obs: &mut [f32]);
    /// One step; writes the next observation and returns
    /// `(reward, terminated, truncated)`.
    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> (f32, bool, bool);
    /// The plant's full state and parameters as bytes, so a checkpoint can
    /// put an episode in flight back exactly; `None` if it cannot (then a
    /// resumed run starts new episodes).
    fn save_state(&self) -> Option<Vec<u8>> {
        None
    }
    /// Restores what [`save_state`](Self::save_state) returned.
    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let _ = bytes;
        Err("this environment cannot restore a saved state".into())
    }
    /// Replaces the plant's parameters (a JSON object, field name → value,
    /// as `RegisteredPlant::default_params` gives them); the next step uses
    /// them.
    fn set_params(&mut self, params: &serde_json::Value) -> Result<(), String> {
        let _ = params;
        Err("this environment has no parameters".into())
    }
}

/// Adapter from a [`Plant`] to [`Env`].
pub struct PlantEnv<P, const O: usize, const A: usize>(pub P);

impl<P: Plant<O, A> + Send, const O: usize, const A: usize> Env for PlantEnv<P, O, A> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn obs_dim(&self) -> usize {
        O
    }
    fn act_dim(&self) -> usize {
        A
    }
    fn action_low(&self) -> Vec<f32> {
        P::ACTION_LOW.to_vec()
    }
    fn action_high(&self) -> Vec<f32> {
        P::ACTION_HIGH.to_vec()
    }
    fn safe_action(&self) -> Vec<f32> {
        P::SAFE_ACTION.to_vec()
    }
    fn max_episode_steps(&self) -> u32 {
        P::MAX_EPISODE_STEPS
    }
    fn reset(&mut self, rng: &mut DefaultRng, obs: &mut [f32]) {
        obs.copy_from_slice(&self.0.reset(rng));
    }
    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> (f32, bool, bool) {
        let mut a = [0.0; A];
        a.copy_from_slice(action);
        let tr = self.0.step(&a);
        obs.copy_from_slice(&tr.obs);
        (tr.reward, tr.terminated, tr.truncated)
    }
    /// postcard of `(Plant::State, Plant::Params)`.
    fn save_state(&self) -> Option<Vec<u8>> {
        postcard::to_allocvec(&(self.0.state(), self.0.params())).ok()
    }
    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (state, params): (P::State, P::Params) =
            postcard::from_bytes(bytes).map_err(|e| format!("plant {}: {e}", P::NAME))?;
        self.0.set_params(params);
        self.0.set_state(state);
        Ok(())
    }
    fn set_params(&mut self, params: &serde_json::Value) -> Result<(), String> {
        let p: P::Params = serde_json::from_value(params.clone())
            .map_err(|e| format!("plant {} parameters: {e}", P::NAME))?;
        self.0.set_params(p);
        Ok(())
    }
}
