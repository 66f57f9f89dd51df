// libFuzzer harness: the safetensors header parser on arbitrary bytes (the whole "file" in memory).
// Built only by `make fuzz` (OCDEDIT_FUZZ=1, -sanitize=fuzzer,address); takes libFuzzer's options.
import Foundation
import StableDiffusion
import CFuzzerDriver

private let emptyInput = UnsafePointer<UInt8>(bitPattern: 1)!

@main
enum FuzzSafetensors {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzSafetensors(data ?? emptyInput, size) })
    }
}

func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let file = UnsafeRawBufferPointer(start: data, count: size)
    guard let header = try? SafetensorsFile.parseHeader(file, path: "fuzz.safetensors") else { return 0 }
    // Whatever the parser accepts must lie inside the file: touch the first and last byte of every tensor so
    // AddressSanitizer sees an accepted out-of-range entry.
    var sum: UInt8 = 0
    for entry in header.entries.values where entry.end > entry.begin {
        sum &+= file[header.dataStart + entry.begin] &+ file[header.dataStart + entry.end - 1]
    }
    return sum == 255 ? 0 : 0
}
