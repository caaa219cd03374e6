//! Built-in worker programs that vigil runs as subcommands of its own executable.
//!
//! Owns the worker-side code of the built-in kinds (`vigil worker indexing`) and their
//! [`WorkerType`](vigil_actors::worker_type::WorkerType) implementations. It must not supervise
//! anything: it runs inside the worker process.

pub mod indexing;
