//! Writes man pages and shell completions generated from the clap definitions, and the table of
//! gear.conf keys generated from the key table, for packaging:
//! `cargo run --release --example generate_docs -- OUTPUT_DIR`.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use gearpump_master::cli::{GearArgs, MasterArgs, SetupArgs};

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/docs".into()));
    std::fs::create_dir_all(out.join("man"))?;
    std::fs::create_dir_all(out.join("completions"))?;
    for mut command in [MasterArgs::command(), GearArgs::command(), SetupArgs::command()] {
        let name = command.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut page)?;
        std::fs::write(out.join("man").join(format!("{name}.1")), page)?;
        for shell in [Shell::Bash, Shell::Zsh] {
            clap_complete::generate_to(shell, &mut command, &name, out.join("completions"))?;
        }
    }
    // The same table the README carries between its marker comments (a test keeps it current).
    std::fs::write(out.join("gear-conf-keys.md"), gearpump_master::config::key_table_markdown())?;
    println!("man pages, completions and gear-conf-keys.md written to {}", out.display());
    Ok(())
}
