/*
 * lib/io public header: bytes <-> tensors. safetensors, GGUF, HDF5, config.json, and the
 * checkpoint abstraction that opens any of them. Knows no model semantics beyond the
 * hyper-parameters and the HF <-> GGUF tensor naming.
 */
#ifndef LMP_IO_H
#define LMP_IO_H

#include "../core/core.h"
#include "safetensors.h"
#include "gguf.h"
#include "config.h"
#include "h5.h"
#include "checkpoint.h"
#include "synth.h"
#include "lora.h"

#endif
