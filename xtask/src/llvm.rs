//! `cargo xtask llvm --from /usr/lib/llvm-NN`: lets burn's CUDA backend build without the internet.
//!
//! burn-cuda compiles its kernels through LLVM's NVPTX back end (cubecl-llvm), which takes LLVM
//! from `tracel-llvm-bundler`. That crate's build script downloads a prebuilt bundle into
//! `~/.local/share/tracel/tracel-llvm-<version>/` unless the empty file `.tracel-llvm-installed`
//! is already there, and then asks that folder's `bin/llvm-config` how to link. This task lays
//! the folder out over an installed LLVM instead: `include` and `lib` link to it, and
//! `bin/llvm-config` is a wrapper around its `llvm-config` that leaves out the system libraries
//! the bundler cannot pass to the linker (it turns `/usr/lib/.../libz3.so` into `-llibz3`) and
//! that the NVPTX code path never calls (z3, libxml2).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// System libraries `llvm-config --system-libs` names that the bundle's link line must not get.
const DROPPED_SYSTEM_LIBS: &[&str] = &["libz3", "-lxml2"];

/// The bundler version this workspace locks, read from Cargo.lock so the folder name never
/// drifts from what the build script looks for.
pub fn locked_bundler_version(cargo_lock: &str) -> Option<String> {
    let mut lines = cargo_lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"tracel-llvm-bundler\"" {
            let version = lines.next()?.trim().strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(version.to_string());
        }
    }
    None
}

/// Where the bundler looks: `$XDG_DATA_HOME` or `~/.local/share`, then `tracel/tracel-llvm-<version>`.
pub fn default_destination(version: &str) -> anyhow::Result<PathBuf> {
    let data = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --dest")?)
            .join(".local")
            .join("share"),
    };
    Ok(data.join("tracel").join(format!("tracel-llvm-{version}")))
}

/// The wrapper script: the real `llvm-config`, with [`DROPPED_SYSTEM_LIBS`] filtered out of
/// `--system-libs`.
pub fn wrapper_script(real_llvm_config: &Path) -> String {
    let filters: Vec<String> = DROPPED_SYSTEM_LIBS.iter().map(|lib| format!(" -e '{lib}'")).collect();
    format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask llvm`: {real} for tracel-llvm-bundler, without the system\n\
         # libraries its link line cannot take (see xtask/src/llvm.rs).\n\
         real='{real}'\n\
         case \" $* \" in\n\
         \x20 *\" --system-libs \"*) \"$real\" \"$@\" | tr ' ' '\\n' | grep -v{filters} | tr '\\n' ' ' | sed 's/ *$//'; echo ;;\n\
         \x20 *) exec \"$real\" \"$@\" ;;\n\
         esac\n",
        real = real_llvm_config.display(),
        filters = filters.join(""),
    )
}

/// Lays out `dest` over the LLVM installed at `from`; returns the LLVM version found.
pub fn lay_out(from: &Path, dest: &Path) -> anyhow::Result<String> {
    let real = from.join("bin").join("llvm-config");
    if !real.is_file() {
        bail!(
            "{}: no bin/llvm-config here; pass the LLVM prefix, e.g. --from /usr/lib/llvm-19 (Debian: apt-get install \
                llvm-19-dev libpolly-19-dev libzstd-dev)",
            from.display()
        );
    }
    for sub in ["include/llvm-c", "lib"] {
        if !from.join(sub).is_dir() {
            bail!(
                "{}: no {sub} folder; the LLVM development files are missing (Debian: the llvm-NN-dev package)",
                from.display()
            );
        }
    }
    let output =
        Command::new(&real).arg("--version").output().with_context(|| format!("cannot run {}", real.display()))?;
    if !output.status.success() {
        bail!("{} --version failed: {}", real.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();

    std::fs::create_dir_all(dest.join("bin")).with_context(|| format!("cannot create {}", dest.display()))?;
    for sub in ["include", "lib"] {
        let link = dest.join(sub);
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link)
                .or_else(|_| std::fs::remove_dir_all(&link))
                .with_context(|| format!("cannot replace {}", link.display()))?;
        }
        std::os::unix::fs::symlink(from.join(sub), &link)
            .with_context(|| format!("cannot link {} to {}", link.display(), from.join(sub).display()))?;
    }
    let wrapper = dest.join("bin").join("llvm-config");
    std::fs::write(&wrapper, wrapper_script(&real)).with_context(|| format!("cannot write {}", wrapper.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let sentinel = dest.join(".tracel-llvm-installed");
    std::fs::write(&sentinel, b"").with_context(|| format!("cannot write {}", sentinel.display()))?;
    Ok(version)
}

/// The PyPI packages that carry LLVM 23 with NVPTX, pinned.
const PIP_PACKAGES: &[&str] = &["mlc-llvm-static==23.1.1.post0", "mlc-llvm-static-extra-targets==23.1.1.post0"];

/// Installs [`PIP_PACKAGES`] into a virtual environment at `venv`; returns the LLVM prefix.
fn pip_llvm(venv: &Path) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin").join("python");
    if !python.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .context("cannot run python3 (needed to fetch LLVM from PyPI; or pass --from)")?;
        if !status.success() {
            bail!("python3 -m venv {} failed", venv.display());
        }
    }
    println!("installing {} into {}", PIP_PACKAGES.join(" "), venv.display());
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(PIP_PACKAGES)
        .status()
        .context("cannot run pip")?;
    if !status.success() {
        bail!(
            "pip could not install {} (is PyPI reachable? or pass --from with an installed LLVM 23)",
            PIP_PACKAGES.join(" ")
        );
    }
    let output = Command::new(&python)
        .args([
            "-c",
            "import mlc_llvm_static, pathlib; print(pathlib.Path(mlc_llvm_static.__file__).parent / 'static')",
        ])
        .output()
        .context("cannot ask python where mlc_llvm_static is")?;
    if !output.status.success() {
        bail!(
            "mlc_llvm_static is not importable in {}: {}",
            venv.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// The task: find the locked bundler version, lay the folder out, say what to do next.
pub fn run(from: Option<PathBuf>, dest: Option<PathBuf>) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask has no parent folder")?;
    let from = match from {
        Some(f) => f,
        None => pip_llvm(&root.join("target").join("llvm-sdk"))?,
    };
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("cannot read Cargo.lock")?;
    let bundler = locked_bundler_version(&lock)
        .context("Cargo.lock has no tracel-llvm-bundler (is burn's cuda feature still used?)")?;
    let dest = match dest {
        Some(d) => d,
        None => default_destination(&bundler)?,
    };
    let version = lay_out(&from, &dest)?;
    println!("laid out {} over LLVM {version} at {}", dest.display(), from.display());
    println!("tracel-llvm-bundler {bundler} will use it instead of downloading. Next:");
    println!("  cargo build --release -p fer-cli --features cuda");
    println!("(after changing this folder, `cargo clean -p cubecl-llvm` so its link step reruns)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_locked_version() {
        let lock = "[[package]]\nname = \"other\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \
            \"tracel-llvm-bundler\"\nversion = \"23.1.0-4\"\nsource = \"x\"\n";
        assert_eq!(locked_bundler_version(lock).as_deref(), Some("23.1.0-4"));
        assert_eq!(locked_bundler_version("[[package]]\nname = \"other\"\n"), None);
    }

    #[test]
    fn lays_out_the_bundle_folder_over_an_llvm_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let from = tmp.path().join("llvm-99");
        std::fs::create_dir_all(from.join("bin")).unwrap();
        std::fs::create_dir_all(from.join("include/llvm-c")).unwrap();
        std::fs::create_dir_all(from.join("lib")).unwrap();
        // A stand-in llvm-config that prints what Debian's prints, z3 path and xml2 included.
        let fake = from.join("bin/llvm-config");
        std::fs::write(
            &fake,
            "#!/bin/sh\ncase \"$*\" in\n *--version*) echo 99.1.0 ;;\n *--system-libs*) echo '-lrt -ldl -lm -lz \
                -lzstd /usr/lib/x86_64-linux-gnu/libz3.so -lxml2' ;;\n *) echo \"args: $*\" ;;\nesac\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

        let dest = tmp.path().join("tracel/tracel-llvm-23.1.0-4");
        assert_eq!(lay_out(&from, &dest).unwrap(), "99.1.0");
        assert!(dest.join(".tracel-llvm-installed").exists());
        assert_eq!(std::fs::read_link(dest.join("lib")).unwrap(), from.join("lib"));
        assert!(dest.join("include/llvm-c").is_dir());
        let run = |arg: &[&str]| {
            String::from_utf8(Command::new(dest.join("bin/llvm-config")).args(arg).output().unwrap().stdout).unwrap()
        };
        assert_eq!(run(&["--link-static", "--system-libs"]).trim(), "-lrt -ldl -lm -lz -lzstd");
        assert_eq!(run(&["--link-static", "--libs"]).trim(), "args: --link-static --libs");
        // Running it again replaces the layout instead of failing.
        lay_out(&from, &dest).unwrap();

        let err = lay_out(&tmp.path().join("nowhere"), &dest).unwrap_err().to_string();
        assert!(err.contains("bin/llvm-config") && err.contains("nowhere"), "{err}");
    }
}
