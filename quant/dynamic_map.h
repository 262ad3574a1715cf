/* bitsandbytes' signed 8-bit "dynamic" map (bnb-format.md §2.2).
 *
 * create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) as
 * evaluated by torch >= 2.0 on the CPU, bit for bit: the 256 sorted values
 * used to quantize the block absmax of double-quantized 4-bit weights.
 * Real checkpoints may carry a map whose last bits differ (older torch
 * linspace), so loaders must use the stored `nested_quant_map`; this table
 * is what a writer uses (and stores). */
#ifndef SR_DYNAMIC_MAP_H
#define SR_DYNAMIC_MAP_H

#define SR_DYNAMIC_MAP_SIZE 256

/* Fills map[0..256) in ascending order: map[0] = -0.99296874,
 * map[127] = 0, map[255] = 1. */
void sr_dynamic_map(float map[SR_DYNAMIC_MAP_SIZE]);

#endif
