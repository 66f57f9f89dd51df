import Foundation
import XCTest
import StableDiffusion
import TensorKernels

/// Our models against diffusers/transformers outputs on the committed tiny pipelines (SD1- and SD2-style),
/// batch 2, non-square inputs. Target: 1e-4 relative max error.
final class ModelParityTests: XCTestCase {
    let configs = ["tiny-sd1", "tiny-sd2"]

    func testUNetMatchesDiffusers() throws {
        for name in configs {
            let unet = try UNet2DConditionModel(folder: Fixtures.url("\(name)/unet"))
            let input = try Fixtures.tensors("\(name)/reference/unet_in.safetensors")
            let expected = try Fixtures.tensors("\(name)/reference/unet_out.safetensors").tensor("sample")
            let out = unet(try input.tensor("sample"), timesteps: try input.tensor("timestep").array,
                           encoderHiddenStates: try input.tensor("encoder_hidden_states"))
            XCTAssertEqual(out.shape, expected.shape)
            let err = relativeMaxError(out, expected)
            print("parity \(name) unet: \(err)")
            XCTAssertLessThan(err, 1e-4, "\(name) unet")
        }
    }

    /// A 7×9 latent (not a multiple of 2): the downsampler rounds up to 4×5, the upsampler resizes back to the skip's
    /// 7×9 as diffusers' `upsample_size` path does. The editor relies on this for foreground crops of any size.
    func testUNetOddLatentSizeMatchesDiffusers() throws {
        let unet = try UNet2DConditionModel(folder: Fixtures.url("tiny-sd1/unet"))
        let input = try Fixtures.tensors("tiny-sd1/reference/unet_odd_in.safetensors")
        let expected = try Fixtures.tensors("tiny-sd1/reference/unet_odd_out.safetensors").tensor("sample")
        let out = unet(try input.tensor("sample"), timesteps: try input.tensor("timestep").array,
                       encoderHiddenStates: try input.tensor("encoder_hidden_states"))
        XCTAssertEqual(out.shape, [2, 4, 7, 9])
        let err = relativeMaxError(out, expected)
        print("parity tiny-sd1 unet 7×9: \(err)")
        XCTAssertLessThan(err, 1e-4)
    }

    func testVAEMatchesDiffusers() throws {
        for name in configs {
            let vae = try AutoencoderKL(folder: Fixtures.url("\(name)/vae"))
            let encIn = try Fixtures.tensors("\(name)/reference/vae_encode_in.safetensors").tensor("sample")
            let encOut = try Fixtures.tensors("\(name)/reference/vae_encode_out.safetensors").tensor("latent_mean")
            let mean = vae.encode(encIn)
            XCTAssertEqual(mean.shape, encOut.shape)
            let e1 = relativeMaxError(mean, encOut)
            let decIn = try Fixtures.tensors("\(name)/reference/vae_decode_in.safetensors").tensor("latent")
            let decOut = try Fixtures.tensors("\(name)/reference/vae_decode_out.safetensors").tensor("sample")
            let image = vae.decode(decIn)
            XCTAssertEqual(image.shape, decOut.shape)
            let e2 = relativeMaxError(image, decOut)
            print("parity \(name) vae encode: \(e1) decode: \(e2)")
            XCTAssertLessThan(e1, 1e-4, "\(name) vae encode")
            XCTAssertLessThan(e2, 1e-4, "\(name) vae decode")
        }
    }

    func testTextEncoderMatchesTransformers() throws {
        for name in configs {
            let model = try CLIPTextModel(folder: Fixtures.url("\(name)/text_encoder"))
            let ref = try Fixtures.tensors("\(name)/reference/text_encoder_out.safetensors")
            let ids = try ref.int64s("input_ids")
            let rows = stride(from: 0, to: ids.values.count, by: 77).map {
                ids.values[$0..<($0 + 77)].map { Int32($0) }
            }
            let out = model(rows)
            let expected = try ref.tensor("last_hidden_state")
            let err = relativeMaxError(out, expected)
            print("parity \(name) text encoder: \(err)")
            XCTAssertLessThan(err, 1e-4, "\(name) text encoder")
        }
    }
}
