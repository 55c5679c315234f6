import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.library)
    alias(libs.plugins.kotlin.android)
    `maven-publish`
}

// The repository root (android/..): the Cargo workspace and the generated bindings live there.
val repoRoot: File = rootProject.projectDir.parentFile
val jniLibsDir: File = file("src/main/jniLibs")

android {
    namespace = "dev.fourierft"
    compileSdk = 36
    // The NDK cargo-ndk links with (passed as ANDROID_NDK_HOME unless that is set already).
    ndkVersion = "27.0.12077973"

    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }

    buildTypes {
        release {
            // A library is shrunk by the app that uses it, with consumer-rules.pro.
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    sourceSets {
        getByName("main") {
            // The uniffi-generated bindings, committed in bindings/kotlin (package dev.fourierft).
            kotlin.srcDir(File(repoRoot, "bindings/kotlin"))
            // libfourierft_ffi.so per ABI, written by cargoBuildAndroid (not committed).
            jniLibs.srcDir(jniLibsDir)
        }
    }

    publishing {
        singleVariant("release") {
            withSourcesJar()
        }
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    // JNA with its Android libjnidispatch.so per ABI: the @aar artifact, not the desktop jar.
    // `api`: the generated bindings' public API includes JNA types (RustBuffer is a Structure).
    api(libs.jna) {
        artifact {
            type = "aar"
        }
    }
    // Only needed by bindings generated with `android = true` (@RequiresApi); harmless otherwise.
    implementation(libs.androidx.annotation)
}

// --- Rust: libfourierft_ffi.so for each ABI, with cargo-ndk ------------------------------------

val skipCargo: Provider<Boolean> =
    providers.gradleProperty("fourierft.skipCargo").map { it.toBoolean() }.orElse(false)
val abis: Provider<List<String>> =
    providers.gradleProperty("fourierft.abis")
        .map { value -> value.split(',').map { it.trim() }.filter { it.isNotEmpty() } }
        .orElse(listOf("arm64-v8a", "armeabi-v7a", "x86_64"))
val ndkDirectory: Provider<Directory> = androidComponents.sdkComponents.ndkDirectory
val minSdkLevel: Int = android.defaultConfig.minSdk ?: 24

val cargoBuildAndroid = tasks.register<Exec>("cargoBuildAndroid") {
    group = "build"
    description = "Builds libfourierft_ffi.so (release) for each Android ABI into src/main/jniLibs " +
        "with cargo-ndk. Skip with -Pfourierft.skipCargo=true."
    onlyIf("fourierft.skipCargo is not true") { !skipCargo.get() }
    workingDir = repoRoot
    // No declared outputs: the task always runs and cargo decides what is stale (a no-op build
    // takes about a second per ABI).
    inputs.property("abis", abis)
    argumentProviders.add(
        CommandLineArgumentProvider {
            abis.get().flatMap { listOf("-t", it) } +
                listOf(
                    "--platform", minSdkLevel.toString(),
                    "-o", jniLibsDir.absolutePath,
                    "build", "--release", "-p", "fourierft-ffi",
                )
        },
    )
    executable = "cargo"
    args("ndk")
    doFirst {
        if (System.getenv("ANDROID_NDK_HOME").isNullOrEmpty()) {
            (this as Exec).environment("ANDROID_NDK_HOME", ndkDirectory.get().asFile.absolutePath)
        }
    }
}

tasks.named("preBuild") {
    dependsOn(cargoBuildAndroid)
}

// --- Publishing: the release AAR as dev.fourierft:fourierft --------------------------------------

publishing {
    publications {
        register<MavenPublication>("release") {
            groupId = providers.gradleProperty("fourierft.group").getOrElse("dev.fourierft")
            artifactId = "fourierft"
            version = providers.gradleProperty("fourierft.version").getOrElse("0.1.0")
            pom {
                name.set("fourierft")
                description.set(
                    "Run FourierFT-customised LLaMA models on Android: a quantised base model " +
                        "and kilobyte adapters swapped at run time (Rust engine, uniffi bindings).",
                )
                licenses {
                    license {
                        name.set("Apache-2.0")
                        url.set("https://www.apache.org/licenses/LICENSE-2.0")
                    }
                }
            }
            afterEvaluate {
                from(components["release"])
            }
        }
    }
    repositories {
        maven {
            name = "localRepo"
            url = uri(layout.buildDirectory.dir("repo"))
        }
    }
}
