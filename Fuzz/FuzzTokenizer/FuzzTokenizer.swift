// libFuzzer harness: the CLIP tokenizer (Tests/Fixtures/clip-bpe, CLIP's real vocabulary and merges) on arbitrary
// bytes turned into a String (invalid UTF-8 repaired to U+FFFD, as String(cString:) does for element properties).
// Built only by `make fuzz` (OCDEDIT_FUZZ=1, -sanitize=fuzzer,address); takes libFuzzer's options.
import Foundation
import StableDiffusion
import CFuzzerDriver

let tokenizer: CLIPTokenizer = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let folder = ProcessInfo.processInfo.environment["FUZZ_TOKENIZER"]
        .map { URL(fileURLWithPath: $0) } ?? root.appendingPathComponent("Tests/Fixtures/clip-bpe")
    do { return try CLIPTokenizer(folder: folder) } catch { fatalError("fuzz setup: \(error)") }
}()

private let emptyInput = UnsafePointer<UInt8>(bitPattern: 1)!

@main
enum FuzzTokenizer {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzTokenizer(data ?? emptyInput, size) })
    }
}

func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let ids = tokenizer.inputIds(text)
    guard ids.count == 77, ids.first == tokenizer.bos, ids.allSatisfy({ $0 >= 0 && $0 <= tokenizer.maxId }) else {
        fatalError("ill-formed ids for \(text.debugDescription.prefix(200)): \(ids)")
    }
    let short = tokenizer.inputIds(text, length: Int(size % 5))
    guard short.count == size % 5 else { fatalError("inputIds(length: \(size % 5)) gave \(short.count) ids") }
    return 0
}
