//! The driver's [`Pace`] on SysTick: one control tick per period.

use cortex_m::peripheral::SYST;
use tinyppo_runtime::driver::Pace;

use crate::timing;

/// One tick per control period; counts late ticks (a tick whose work, log
/// included, did not finish within its period: the next one then starts at
/// once instead of waiting). The log queue is drained after every tick.
///
/// SysTick counts at most 2²⁴ cycles (0.67 s at 25 MHz, 0.17 s at 100
/// MHz), so a longer period (a heater's 1 s) is `wraps` SysTick periods of
/// `period / wraps` cycles each (the remainder, under `wraps` cycles, is
/// dropped); then a tick's work is assumed to fit the first of them (SysTick
/// cannot say how many wraps a long tick missed), and late ticks are not
/// counted.
pub struct SysTickPace<'a> {
    syst: &'a mut SYST,
    wraps: u32,
    late: u32,
}

impl<'a> SysTickPace<'a> {
    /// Starts SysTick for a control period of `seconds` at a core clock of
    /// `core_hz`.
    pub fn start(syst: &'a mut SYST, core_hz: u32, seconds: f32) -> Self {
        // u32 arithmetic (u64 division links a 900-byte routine): a
        // period saturates at 2³² cycles, 42.9 s at 100 MHz.
        let cycles = (seconds * core_hz as f32).max(2.0) as u32;
        let wraps = cycles.div_ceil(timing::MAX_RELOAD + 1).max(1);
        let reload = (cycles / wraps).saturating_sub(1).max(1);
        timing::start(syst, reload.min(timing::MAX_RELOAD));
        SysTickPace {
            syst,
            wraps,
            late: 0,
        }
    }

    /// Ticks that overran their period so far.
    pub fn late(&self) -> u32 {
        self.late
    }
}

impl Pace for SysTickPace<'_> {
    fn episode_start(&mut self) {
        // Start the first period now.
        self.syst.clear_current();
        let _ = self.syst.has_wrapped();
    }
    fn wait(&mut self) {
        // A wrap before the wait: the tick's work overran its period.
        let mut wrapped = u32::from(self.syst.has_wrapped());
        if wrapped > 0 && self.wraps == 1 {
            self.late = self.late.saturating_add(1);
            return;
        }
        while wrapped < self.wraps {
            if self.syst.has_wrapped() {
                wrapped += 1;
            }
        }
    }
}
