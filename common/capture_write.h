/* capture_write.h: building the pieces of a capture file: the file header,
 * sections, definition records and compressed blocks. The tracer writes real
 * captures with it; the tests use it to write fixtures. No allocation happens
 * here except inside liblz4's context creation. */
#ifndef MT_COMMON_CAPTURE_WRITE_H
#define MT_COMMON_CAPTURE_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"

/* Header payload fields (tag, length, value). p must have room for
 * 2 * MT_VARINT_MAX + len bytes. Return the new end. */
uint8_t *mt__hdr_put_varint(uint8_t *p, unsigned tag, uint64_t v);
uint8_t *mt__hdr_put_bytes(uint8_t *p, unsigned tag, const void *data,
                           size_t len);

/* Writes the 16-byte fixed file header for a payload of payload_len bytes
 * into out. */
void mt__file_header(uint8_t out[MT_FILE_HEADER_SIZE], unsigned flags,
                     uint32_t payload_len);

/* A string inside a record: varint length, bytes. */
uint8_t *mt__put_str(uint8_t *p, const char *s, size_t len);

/* Section framing: writes type and the varint length of a payload of len
 * bytes; the caller then copies the payload. */
uint8_t *mt__put_section_header(uint8_t *p, unsigned type, size_t len);

/* Definition record framing, the same shape: u8 type, varint length. */
uint8_t *mt__put_def_header(uint8_t *p, unsigned type, size_t len);

/* The largest block that raw_len bytes of sections can compress into,
 * header included. */
size_t mt__block_bound(size_t raw_len);

/* Compresses raw[0, raw_len) into one block (block header and one LZ4 frame
 * with content size and checksum) at out, which has cap bytes. cctx is an
 * LZ4F_cctx* created by the caller (reused across blocks) or NULL for a
 * one-off. Returns the block's size, or MT_ELZ4 / MT_ETOOBIG. */
long mt__block_compress(const uint8_t *raw, size_t raw_len, uint8_t *out,
                        size_t cap, void *cctx);

#endif
