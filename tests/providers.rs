//! The OpenVINO execution provider gives the CPU provider's answers: every model of the
//! manifest, on the demo clip's first frame, through each provider in its own process (one
//! ONNX Runtime library per process), output by output. And a missing OpenVINO falls back to
//! the CPU provider with its reason instead of failing.

mod common;

use common::*;
use serde_json::Value;

fn model_outputs(args: &[&str]) -> Value {
    let out = run_ok(
        bin()
            .arg("bench")
            .arg(demo_clip())
            .arg("--model-outputs")
            .args(args),
    );
    serde_json::from_slice(&out.stdout).expect("model outputs are JSON")
}

fn openvino_installed() -> bool {
    ["/usr/local/lib/mirrorsight", "/usr/lib/mirrorsight"]
        .iter()
        .any(|d| {
            std::path::Path::new(d)
                .join("openvino/libonnxruntime_providers_openvino.so")
                .is_file()
        })
}

#[test]
fn openvino_outputs_match_the_cpu_provider() {
    if !openvino_installed() {
        let reason = "the OpenVINO build of ONNX Runtime is not installed (scripts/setup.sh)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {reason}"
        );
        println!("SKIPPED openvino_outputs_match_the_cpu_provider: {reason}");
        return;
    }
    let cpu = model_outputs(&["--set", "onnxruntime.provider=cpu"]);
    let openvino = model_outputs(&["--set", "onnxruntime.provider=openvino"]);
    assert_eq!(cpu["provider"], "cpu");
    assert_eq!(
        openvino["provider"], "openvino",
        "OpenVINO fell back: {}",
        openvino["fallback"]
    );
    let cpu_models = cpu["models"].as_array().expect("models");
    let ov_models = openvino["models"].as_array().expect("models");
    assert!(cpu_models.len() >= 7, "every model of the manifest runs");
    assert_eq!(cpu_models.len(), ov_models.len());
    for (c, o) in cpu_models.iter().zip(ov_models) {
        let model = c["model"].as_str().unwrap_or_default();
        assert_eq!(c["model"], o["model"]);
        for (ct, ot) in c["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .zip(o["outputs"].as_array().expect("outputs"))
        {
            let values = |t: &Value| -> Vec<f64> {
                t["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(|v| v.as_f64().unwrap_or(f64::NAN))
                    .collect()
            };
            let (a, b) = (values(ct), values(ot));
            assert_eq!(a.len(), b.len(), "{model} {}", ct["name"]);
            // Float32 kernels differ in summation order: allow 0.1 % of the tensor's range
            // (measured: at most 0.02 %, the pose model's segmentation logits).
            let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f64, f64::max);
            assert!(
                worst <= 0.001 * scale,
                "{model} output {}: largest difference {worst} (values up to {scale})",
                ct["name"]
            );
        }
    }
}

#[test]
fn missing_openvino_falls_back_to_the_cpu_provider_with_its_reason() {
    let cpu_library = ["/usr/local/lib/mirrorsight", "/usr/lib/mirrorsight"]
        .iter()
        .map(|d| std::path::Path::new(d).join("libonnxruntime.so"))
        .find(|p| p.is_file());
    let Some(cpu_library) = cpu_library else {
        let reason = "ONNX Runtime is not installed (scripts/setup.sh)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {reason}"
        );
        println!(
            "SKIPPED missing_openvino_falls_back_to_the_cpu_provider_with_its_reason: {reason}"
        );
        return;
    };
    // With the library named explicitly, the CPU build is asked for OpenVINO: registering the
    // provider fails on the first model, and every model runs on the CPU provider instead.
    let out = run_ok(
        bin()
            .arg("check")
            .args(["--set", "onnxruntime.provider=openvino"])
            .args([
                "--set",
                &format!("onnxruntime.library=\"{}\"", cpu_library.display()),
            ]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .contains("onnxruntime provider: cpu (onnxruntime.provider = \"openvino\" fell back:"),
        "{stdout}"
    );
}
