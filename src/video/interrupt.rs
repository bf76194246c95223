//! Ctrl-C (and SIGTERM) during a conversion.
//!
//! The first interrupt sets a flag that the decode, effect and encode loops
//! check between frames: the conversion stops, its temporary file is
//! removed by the normal error path, and the command exits non-zero. A
//! second interrupt (an effect stuck in a long frame) removes the temporary
//! outputs registered here and exits at once with status 130.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The process-wide interrupt flag, installing the Ctrl-C handler on first
/// use. If another part of the program already installed a handler, the
/// flag still works when set by hand but Ctrl-C keeps its old behaviour (a
/// warning says so).
pub fn flag() -> Arc<AtomicBool> {
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                remove_temps();
                std::process::exit(130);
            }
            eprintln!("\nstylestream: interrupted; stopping (press Ctrl-C again to quit at once)");
        });
        if let Err(e) = installed {
            eprintln!("stylestream: warning: cannot catch Ctrl-C ({e}); an interrupted conversion may leave a hidden temporary file");
        }
        flag
    })
    .clone()
}

/// Records a temporary output to remove on a forced exit.
pub(crate) fn register_temp(path: &Path) {
    if let Ok(mut t) = TEMPS.lock() {
        t.push(path.to_path_buf());
    }
}

/// Forgets a temporary output (renamed into place, or removed).
pub(crate) fn unregister_temp(path: &Path) {
    if let Ok(mut t) = TEMPS.lock() {
        t.retain(|p| p != path);
    }
}

fn remove_temps() {
    if let Ok(t) = TEMPS.lock() {
        for p in t.iter() {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}
