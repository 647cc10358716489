//! `meshsync selector`: parse a Calico selector, print its canonical form and unique ID, and with
//! --labels evaluate it (`true`/`false`). Exit code 2 with the error on bad input.

use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SelectorArgs {
    /// The selector expression.
    pub expr: String,
    /// Labels as a JSON object of strings, e.g. '{"app":"web"}'.
    #[arg(long)]
    pub labels: Option<String>,
}

pub fn run(args: SelectorArgs) -> anyhow::Result<ExitCode> {
    let selector = match meshsync_selector::parse(&args.expr) {
        Ok(selector) => selector,
        Err(err) => return Ok(bad_input(&format!("invalid selector: {err}"))),
    };
    let labels = match args.labels.as_deref() {
        None => None,
        Some(json) => match serde_json::from_str::<BTreeMap<String, String>>(json) {
            Ok(labels) => Some(labels),
            Err(err) => return Ok(bad_input(&format!("invalid --labels JSON: {err}"))),
        },
    };
    println!("{}", selector.canonical_str());
    println!("{}", selector.unique_id_str());
    if let Some(labels) = labels {
        println!("{}", selector.evaluate(&labels));
    }
    Ok(ExitCode::SUCCESS)
}

fn bad_input(message: &str) -> ExitCode {
    super::common::bad_input("selector", message)
}
