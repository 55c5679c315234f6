//! The generated Kotlin bindings, for real: bindings/tests/kotlin/EngineTest.kt is compiled with
//! kotlinc against bindings/kotlin and run on the JVM (JNA) against the desktop cdylib and the
//! demo model. Without kotlinc, java or JNA the test prints a note and passes, except under
//! FOURIERFT_REQUIRE_KOTLIN=1 (CI), where it fails.
//!
//! kotlinc: $KOTLINC, else node_modules/kotlin-compiler/bin/kotlinc (npm kotlin-compiler@2.4.20,
//! which .ci/run installs), else `kotlinc` on PATH. JNA: $JNA_JAR, else /usr/share/java/jna.jar
//! (Debian libjna-java). The compiled jar is cached under target/kotlin-test by source hash.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn kotlinc(root: &Path) -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("KOTLINC") {
        let k = PathBuf::from(k);
        return k.is_file().then_some(k);
    }
    let npm = root.join("node_modules/kotlin-compiler/bin/kotlinc");
    if npm.is_file() {
        return Some(npm);
    }
    on_path("kotlinc")
}

fn java() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let j = PathBuf::from(home).join("bin/java");
        if j.is_file() {
            return Some(j);
        }
    }
    on_path("java")
}

fn jna() -> Option<PathBuf> {
    let j = std::env::var_os("JNA_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/jna.jar"));
    j.is_file().then_some(j)
}

/// Skip with a note, or fail under FOURIERFT_REQUIRE_KOTLIN=1.
fn missing(what: &str) {
    let msg = format!(
        "{what}; install it (see .ci/run: apt libjna-java default-jdk-headless, npm kotlin-compiler@2.4.20)"
    );
    if std::env::var("FOURIERFT_REQUIRE_KOTLIN").as_deref() == Ok("1") {
        panic!("FOURIERFT_REQUIRE_KOTLIN=1: {msg}");
    }
    eprintln!("note: skipping the Kotlin bindings test: {msg}");
}

/// Run `cmd`, killing it after `limit`; returns (success, stdout + stderr).
fn run(mut cmd: Command, limit: Duration) -> (bool, String) {
    let out_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "kotlin-test-{}-{}.log",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let log = std::fs::File::create(&out_path).expect("create a log file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(killed after {limit:?})")),
    }
}

#[test]
fn kotlin_engine_test_passes_on_the_jvm() {
    let root = common::root();
    let (Some(kotlinc), Some(java), Some(jna)) = (kotlinc(&root), java(), jna()) else {
        let absent: Vec<&str> = [
            (
                "kotlinc ($KOTLINC, node_modules/kotlin-compiler, PATH)",
                kotlinc(&root).is_none(),
            ),
            ("java (JAVA_HOME, PATH)", java().is_none()),
            ("JNA ($JNA_JAR, /usr/share/java/jna.jar)", jna().is_none()),
        ]
        .into_iter()
        .filter_map(|(what, gone)| gone.then_some(what))
        .collect();
        missing(&format!("not found: {}", absent.join(", ")));
        return;
    };
    let lib = common::build_ffi();

    let sources = [
        root.join("bindings/tests/kotlin/EngineTest.kt"),
        root.join("bindings/kotlin/dev/fourierft/fourierft_ffi.kt"),
    ];
    let mut h = DefaultHasher::new();
    for s in &sources {
        std::fs::read(s)
            .unwrap_or_else(|e| panic!("{}: {e}", s.display()))
            .hash(&mut h);
    }
    kotlinc.hash(&mut h);
    let cache = common::target_dir().join("kotlin-test");
    let jar = cache.join(format!("engine-test-{:016x}.jar", h.finish()));
    if !jar.is_file() {
        std::fs::create_dir_all(&cache).expect("create target/debug/kotlin-test");
        let partial = jar.with_extension("partial.jar");
        let mut c = Command::new(&kotlinc);
        c.args(&sources)
            .arg("-cp")
            .arg(&jna)
            .args(["-include-runtime", "-nowarn", "-d"])
            .arg(&partial);
        let (ok, out) = run(c, Duration::from_secs(600));
        assert!(ok, "kotlinc failed:\n{out}");
        std::fs::rename(&partial, &jar).expect("move the compiled jar into place");
        // Older sources' jars are of no further use.
        for e in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
            if e.path() != jar {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    let mut c = Command::new(&java);
    // One check makes a listener throw: the resulting panic is expected, its backtrace noise.
    c.env("RUST_BACKTRACE", "0");
    c.arg(format!(
        "-Duniffi.component.fourierft_ffi.libraryOverride={}",
        lib.display()
    ))
    .arg("-cp")
    .arg(std::env::join_paths([&jar, &jna]).expect("a classpath"))
    .arg("EngineTestKt")
    .arg(&root);
    let (ok, out) = run(c, Duration::from_secs(300));
    println!("{out}");
    assert!(
        out.contains(" passed, 0 failed"),
        "the Kotlin EngineTest failed:\n{out}"
    );
    assert!(ok, "the Kotlin EngineTest exited with an error:\n{out}");
}
