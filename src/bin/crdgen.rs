//! Writes the CustomResourceDefinitions generated from the Rust types: to stdout, or with `--out DIR`
//! one file per CRD, and with `--reference FILE` the Markdown API reference. `crds/` and that file are
//! only ever written by this program.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Generate the operator's CustomResourceDefinitions")]
struct Args {
    /// Directory to write one `<plural>.<group>.yaml` per CRD into; without it, all go to stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the Markdown API reference (fields, defaults, admission rules) to this file.
    #[arg(long)]
    reference: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let crds = atlas_encryption_operator::crd::all_crds_yaml()?;
    if let Some(path) = &args.reference {
        std::fs::write(path, atlas_encryption_operator::crd::reference::markdown())?;
    }
    match args.out {
        None => {
            let docs: Vec<&str> = crds.iter().map(|(_, yaml)| yaml.as_str()).collect();
            print!("{}", docs.join("---\n"));
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (file, yaml) in &crds {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
    }
    Ok(())
}
