//! # tinyppo-trainer
//!
//! PPO with GAE on `ndarray`, with hand-written forward and backward passes,
//! for the plants of `tinyppo-runtime`; export to the runtime's policy blob.
#![deny(missing_docs)]

pub mod algo;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod env;
pub mod evaluate;
pub mod export;
pub mod finetune;
pub mod gae;
pub mod logs;
pub mod loss;
pub mod mlp;
pub mod model;
pub mod normalize;
pub mod offpolicy;
pub mod optim;
pub mod pg;
pub mod registry;
pub mod report;
pub mod run;
pub mod stats;
pub mod study;
