//! Colour-space helpers for effects.

use candle_core::{Result, Tensor};

/// RGB -> YIQ (NTSC), rows are Y, I, Q.
const RGB_TO_YIQ: [[f32; 3]; 3] = [
    [0.299, 0.587, 0.114],
    [0.595_716, -0.274_453, -0.321_263],
    [0.211_456, -0.522_591, 0.311_135],
];
/// YIQ -> RGB, the inverse of [`RGB_TO_YIQ`].
const YIQ_TO_RGB: [[f32; 3]; 3] = [
    [1.0, 0.956_3, 0.621_0],
    [1.0, -0.272_1, -0.647_4],
    [1.0, -1.107_0, 1.704_6],
];

/// Applies a 3x3 colour matrix to the channel axis of an (N,3,H,W) tensor.
fn mix_channels(x: &Tensor, m: &[[f32; 3]; 3]) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let flat: Vec<f32> = m.iter().flatten().copied().collect();
    let m = Tensor::from_vec(flat, (3, 3), x.device())?.to_dtype(x.dtype())?;
    let pixels = x.reshape((n, c, h * w))?;
    m.broadcast_left(n)?.matmul(&pixels)?.reshape((n, 3, h, w))
}

/// Keeps the painting's luminance and the photo's colour (Gatys et al.,
/// "Preserving colour in neural artistic style transfer", 2016): the
/// brushwork and light come from the style, the hues from the content.
pub fn transfer_luminance(stylized: &Tensor, content: &Tensor) -> Result<Tensor> {
    let styl = mix_channels(stylized, &RGB_TO_YIQ)?;
    let cont = mix_channels(content, &RGB_TO_YIQ)?;
    let yiq = Tensor::cat(&[styl.narrow(1, 0, 1)?, cont.narrow(1, 1, 2)?], 1)?;
    mix_channels(&yiq, &YIQ_TO_RGB)?.clamp(0f32, 1f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn yiq_round_trip_is_identity() -> Result<()> {
        let x = Tensor::rand(0f32, 1., (1, 3, 4, 5), &Device::Cpu)?;
        let back = transfer_luminance(&x, &x)?;
        let err = (back - x)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-3, "{err}");
        Ok(())
    }
}
