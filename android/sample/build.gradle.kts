import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "dev.fourierft.sample"
    compileSdk = 36

    defaultConfig {
        applicationId = "dev.fourierft.sample"
        minSdk = 24
        targetSdk = 36
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = true
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
            // A sample: sign the release build with the debug key so it installs as is.
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildFeatures {
        compose = true
    }

    androidResources {
        // Copied to filesDir byte for byte on first start; no point deflating weights.
        noCompress += listOf("safetensors", "json")
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(project(":fourierft"))

    implementation(platform(libs.compose.bom))
    implementation(libs.compose.ui)
    implementation(libs.compose.material3)
    implementation(libs.androidx.activity.compose)
    implementation(libs.androidx.lifecycle.viewmodel.compose)
    implementation(libs.kotlinx.coroutines.android)
}

// --- Demo assets: the repository's assets/demo model and packed adapters, copied at build time --
// Into src/main/assets/demo (git-ignored), so nothing is committed twice. The app copies them
// from its assets to filesDir on first start (the Engine opens a folder on disk).
val demoAssets = tasks.register<Sync>("copyDemoAssets") {
    description = "Copies assets/demo/model and assets/demo/adapters/*.fft.safetensors into the app's assets."
    from(File(rootProject.projectDir.parentFile, "assets/demo")) {
        include("model/**")
        include("adapters/*.fft.safetensors")
    }
    into(layout.projectDirectory.dir("src/main/assets/demo"))
}

tasks.named("preBuild") {
    dependsOn(demoAssets)
}
