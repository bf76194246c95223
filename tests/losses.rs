//! Each loss's autograd gradient agrees with a central finite difference.

use candle_core::{DType, Device, Result, Tensor, Var};
use stylestream::losses::{content_loss, gram_loss, gram_matrix, total_variation};

/// Compares d loss / d x from candle's autograd with central differences at
/// every element of a small random input, in f64.
fn check_gradient(shape: (usize, usize, usize, usize), loss: impl Fn(&Tensor) -> Result<Tensor>) {
    let dev = Device::Cpu;
    let x0 = Tensor::randn(0f64, 1., shape, &dev).unwrap();
    let x = Var::from_tensor(&x0).unwrap();
    let grads = loss(x.as_tensor()).unwrap().backward().unwrap();
    let analytic = grads
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let base = x0.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let eps = 1e-5;
    let mut max_err = 0f64;
    let mut max_grad = 0f64;
    for i in 0..base.len() {
        let eval = |delta: f64| {
            let mut v = base.clone();
            v[i] += delta;
            let t = Tensor::from_vec(v, shape, &dev).unwrap();
            loss(&t).unwrap().to_scalar::<f64>().unwrap()
        };
        let numeric = (eval(eps) - eval(-eps)) / (2.0 * eps);
        max_err = max_err.max((numeric - analytic[i]).abs());
        max_grad = max_grad.max(numeric.abs());
    }
    assert!(
        max_err <= 1e-6 * max_grad.max(1.0),
        "max gradient error {max_err} (max gradient {max_grad})"
    );
}

#[test]
fn content_loss_gradient_matches_finite_differences() {
    let target = Tensor::randn(0f64, 1., (1, 3, 4, 5), &Device::Cpu).unwrap();
    check_gradient((1, 3, 4, 5), |x| content_loss(x, &target));
}

#[test]
fn style_loss_gradient_matches_finite_differences() {
    let style = Tensor::randn(0f64, 1., (1, 4, 3, 5), &Device::Cpu).unwrap();
    let target = gram_matrix(&style).unwrap();
    check_gradient((2, 4, 3, 5), |x| gram_loss(&gram_matrix(x)?, &target));
}

#[test]
fn total_variation_gradient_matches_finite_differences() {
    check_gradient((1, 3, 5, 4), total_variation);
}

#[test]
fn gram_matrix_is_normalised_by_c_h_w() {
    // A constant map of ones: every Gram entry is H*W / (C*H*W) = 1/C.
    let ones = Tensor::ones((1, 4, 3, 5), DType::F32, &Device::Cpu).unwrap();
    let g = gram_matrix(&ones)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(g.iter().all(|v| (v - 0.25).abs() < 1e-6));
}

#[test]
fn total_variation_is_zero_on_flat_images_and_positive_otherwise() {
    let flat = Tensor::ones((1, 3, 6, 6), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        total_variation(&flat).unwrap().to_scalar::<f32>().unwrap(),
        0.0
    );
    let noisy = Tensor::randn(0f32, 1., (1, 3, 6, 6), &Device::Cpu).unwrap();
    assert!(total_variation(&noisy).unwrap().to_scalar::<f32>().unwrap() > 0.0);
}
