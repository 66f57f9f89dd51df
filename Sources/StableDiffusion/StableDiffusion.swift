// Stable Diffusion models (filled by the model work).
import TensorKernels
