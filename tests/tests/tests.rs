//! Integration tests, one module per area (one test binary, as ripgrep does).

mod alloc_count;
mod util;

mod golden_compat;

mod runtime_format;
mod runtime_gaussian;
mod runtime_int8x4;
mod runtime_limits;
mod runtime_nof64;
mod runtime_props;
mod runtime_quant;

mod trainer_util;

mod cli;
mod study;
mod trainer_algos;
mod trainer_gae;
mod trainer_gemm;
mod trainer_grad;
mod trainer_optim;
mod trainer_parity;
mod trainer_run;
mod trainer_trpo;

mod device_control;
mod device_hal;
mod device_log;
mod device_safety;
mod device_sim;

mod action_history;
mod capture;

mod offpolicy_finetune;
mod offpolicy_is;
mod offpolicy_loss;
mod offpolicy_ope;
mod offpolicy_vtrace;

mod pg_estimators;

mod run_integrity;
mod sim_to_real;
mod user_plant;
mod validation;
