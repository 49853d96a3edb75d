pub mod bench;
pub mod data;
pub mod eval;
pub mod explain;
pub mod model;
pub mod predict;
pub mod serve;
pub mod train;

/// `--precision`: parses [`fer_kernels::Precision`], the one precision type from the kernels to
/// the command line, and lists its names in `--help`.
pub fn precision_parser() -> impl clap::builder::TypedValueParser<Value = fer_kernels::Precision> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(fer_kernels::Precision::NAMES)
        .try_map(|name| name.parse::<fer_kernels::Precision>())
}
