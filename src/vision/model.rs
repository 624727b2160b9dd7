//! A loaded model with one square NHWC image input and its reusable input buffer.

use ort::session::Session;
use ort::value::TensorRef;

use super::VisionError;
use super::tensor::{Range, Roi, sample_roi};
use crate::frame::RgbImage;

pub struct ImageModel {
    pub name: &'static str,
    session: Session,
    size: usize,
    range: Range,
    input: Vec<f32>,
    outputs: Vec<String>,
}

impl ImageModel {
    pub fn new(name: &'static str, session: Session, size: usize, range: Range) -> Self {
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        Self {
            name,
            session,
            size,
            range,
            input: vec![0.0; size * size * 3],
            outputs,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Samples the ROI of `image` into the input tensor.
    pub fn prepare(&mut self, image: &RgbImage, roi: &Roi) {
        sample_roi(image, roi, self.size, self.range, &mut self.input);
    }

    /// Runs the model on the prepared input and hands the chosen outputs (by index, in
    /// model order) to `read` without copying them.
    pub fn run<R>(
        &mut self,
        wanted: &[usize],
        read: impl FnOnce(&[&[f32]]) -> R,
    ) -> Result<R, VisionError> {
        let name = self.name;
        let fail = |e: ort::Error| VisionError::Inference {
            model: name,
            reason: e.to_string(),
        };
        let input =
            TensorRef::from_array_view(([1usize, self.size, self.size, 3], self.input.as_slice()))
                .map_err(fail)?;
        let outputs = self.session.run(ort::inputs![input]).map_err(fail)?;
        let mut views: Vec<&[f32]> = Vec::with_capacity(wanted.len());
        for &i in wanted {
            let key = self.outputs.get(i).ok_or_else(|| VisionError::Inference {
                model: name,
                reason: format!("output {i} does not exist"),
            })?;
            let (_, data) = outputs[key.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(fail)?;
            views.push(data);
        }
        Ok(read(&views))
    }
}
