/* libFuzzer's entry for a program that has its own main (SwiftPM gives every
 * executable one): scripts/fuzz links libclang_rt.fuzzer_no_main and pvz-fuzz
 * calls this. Only referenced when built with -DFUZZING. */
#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
#endif
