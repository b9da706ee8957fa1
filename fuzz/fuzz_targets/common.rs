//! Shared by the fuzz targets: run whatever loads, and check the runtime's
//! guarantee (no panic; no non-finite action from a valid blob).

use tinyppo_runtime::{rng, Blob, Policy};

const OBS: [[f32; 3]; 4] = [
    [0.0, 0.0, 0.0],
    [1.0, -2.0, 3.0],
    [f32::MAX, -f32::MAX, 1e30],
    [-1e-40, 1e-40, -0.0],
];

fn run<const O: usize, const A: usize, const H: usize>(bytes: &[u8]) {
    let Ok(p) = Policy::<O, A, H>::from_bytes(bytes) else {
        return;
    };
    let mut r = rng::seeded(0);
    for obs in OBS {
        let obs: [f32; O] = core::array::from_fn(|i| obs[i % 3]);
        let step = p.act(&obs, &mut r).expect("finite observation");
        assert!(step
            .action
            .iter()
            .chain(&step.applied)
            .all(|v| v.is_finite()));
        assert!(step.log_prob.is_finite());
        assert!(p.mean(&obs).unwrap().iter().all(|v| v.is_finite()));
    }
}

pub fn check(bytes: &[u8]) {
    let Ok(blob) = Blob::parse(bytes) else { return };
    // Dispatch on the small shapes the seeds and their mutations have.
    match (blob.obs_dim, blob.act_dim) {
        (1, 1) => run::<1, 1, 256>(bytes),
        (2, 1) => run::<2, 1, 256>(bytes),
        (3, 1) => run::<3, 1, 256>(bytes),
        (3, 2) => run::<3, 2, 256>(bytes),
        _ => {}
    }
}

/// Frames `payload` as a v1 blob with a valid policy id and CRC, so the
/// fuzzer's bytes reach payload validation instead of the checksum.
#[allow(dead_code)] // Used by the `payload` target only.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    use tinyppo_runtime::format::CRC32C;
    let mut b = b"TPPO".to_vec();
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&CRC32C.checksum(payload).to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    let crc = CRC32C.checksum(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}
