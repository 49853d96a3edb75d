pub mod bench;
pub mod data;
pub mod eval;
pub mod explain;
pub mod model;
pub mod predict;
pub mod serve;
pub mod train;
