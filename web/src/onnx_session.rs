//! `OnnxSession`: any ONNX model on our executor from JS, for pages that embed the executor
//! alone (and for the benchmark against onnxruntime-web).

use crate::generator::describe;
use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::{DType, Tensor};
use js_sys::{Array, Float32Array, Object, Reflect};
use std::collections::{BTreeMap, HashMap};
use wasm_bindgen::prelude::*;

/// One ONNX model built for fixed input shapes on the wasm CPU backend or WebGPU.
#[wasm_bindgen]
pub struct OnnxSession {
    session: Session,
}

fn err(e: impl std::error::Error) -> JsError {
    JsError::new(&describe(&e))
}

#[wasm_bindgen]
impl OnnxSession {
    /// `model`: the .onnx bytes; `names`/`files`: its external data files by relative path;
    /// `shapes`: JSON `{"input": [dims...]}`; `backend`: `"cpu"` or `"gpu"`.
    pub async fn build(
        model: Vec<u8>,
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
        shapes: String,
        backend: String,
    ) -> Result<OnnxSession, JsError> {
        console_error_panic_hook::set_once();
        let shapes: HashMap<String, Vec<usize>> = serde_json::from_str(&shapes)
            .map_err(|e| JsError::new(&format!("shapes: {e} (expected {{\"input\": [1, 4, 16, 16]}})")))?;
        let backend = match backend.as_str() {
            "cpu" => Backend::Cpu,
            "gpu" => Backend::Gpu,
            other => return Err(JsError::new(&format!("backend `{other}`: use \"cpu\" or \"gpu\""))),
        };
        let files: BTreeMap<String, Vec<u8>> =
            names.into_iter().zip(files.iter().map(|f| f.to_vec())).collect();
        let options = SessionOptions { backend, ..Default::default() };
        let source = ModelSource::Memory { model: &model, files: &files };
        let session = Session::build_async(source, &shapes, &options).await.map_err(err)?;
        Ok(OnnxSession { session })
    }

    /// Inputs and outputs as JSON: `{inputs: [{name, dtype, shape}], outputs: [...]}`.
    pub fn info(&self) -> String {
        let i = self.session.info();
        serde_json::json!({ "inputs": i.inputs, "outputs": i.outputs }).to_string()
    }

    /// Runs the model. `names[i]` gets `values[i]`, converted to the input's type (integer inputs
    /// take whole numbers). Returns `[{name, shape, data: Float32Array}]`, outputs as f32.
    pub async fn run(&self, names: Vec<String>, values: Vec<Float32Array>) -> Result<Array, JsError> {
        let declared = &self.session.info().inputs;
        let mut inputs = HashMap::new();
        for (name, value) in names.into_iter().zip(values) {
            let info = declared.iter().find(|t| t.name == name).ok_or_else(|| {
                let known: Vec<&str> = declared.iter().map(|t| t.name.as_str()).collect();
                JsError::new(&format!("the model has no input `{name}`; its inputs: {known:?}"))
            })?;
            let shape = info.shape.clone().unwrap_or_default();
            let tensor = Tensor::from_f32(shape, value.to_vec()).map_err(err)?;
            let tensor = match info.dtype {
                Some(d) if d != DType::F32 => tensor.cast(d),
                _ => tensor,
            };
            inputs.insert(name, tensor);
        }
        let outputs = self.session.run_async(inputs).await.map_err(err)?;
        let result = Array::new();
        for (name, tensor) in outputs {
            let o = Object::new();
            let shape: Array = tensor.shape().iter().map(|&d| JsValue::from(d as f64)).collect();
            Reflect::set(&o, &"name".into(), &name.into()).map_err(|_| JsError::new("Reflect.set"))?;
            Reflect::set(&o, &"shape".into(), &shape).map_err(|_| JsError::new("Reflect.set"))?;
            let data = Float32Array::from(tensor.to_f32_vec().as_slice());
            Reflect::set(&o, &"data".into(), &data).map_err(|_| JsError::new("Reflect.set"))?;
            result.push(&o);
        }
        Ok(result)
    }
}
