// libFuzzer's driver entry (compiler-rt FuzzerInterface.h): the harnesses' `main` calls it, since SwiftPM links an
// executable's own entry point (`<Module>_main`) as `main` and so never uses the one libFuzzer brings.
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));
