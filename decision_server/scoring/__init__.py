"""ML scoring: model specs, training, ONNX export, the models folder and serving."""
