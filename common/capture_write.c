/* capture_write.c: header fields, section and record framing, and block
 * compression, as docs/FORMAT.md specifies them. */
#include <lz4frame.h>
#include <string.h>

#include "capture_write.h"
#include "memtrace/memtrace.h"

uint8_t *mt__hdr_put_varint(uint8_t *p, unsigned tag, uint64_t v)
{
    uint8_t tmp[MT_VARINT_MAX];
    size_t n = (size_t)(mt__put_varint(tmp, v) - tmp);
    p = mt__put_varint(p, tag);
    p = mt__put_varint(p, n);
    memcpy(p, tmp, n);
    return p + n;
}

uint8_t *mt__hdr_put_bytes(uint8_t *p, unsigned tag, const void *data,
                           size_t len)
{
    p = mt__put_varint(p, tag);
    p = mt__put_varint(p, len);
    if (len)
        memcpy(p, data, len);
    return p + len;
}

void mt__file_header(uint8_t out[MT_FILE_HEADER_SIZE], unsigned flags,
                     uint32_t payload_len)
{
    memcpy(out, MT_MAGIC, MT_MAGIC_SIZE);
    mt__put_u16le(out + 8, MT_FORMAT_VERSION);
    mt__put_u16le(out + 10, (uint16_t)flags);
    mt__put_u32le(out + 12, payload_len);
}

uint8_t *mt__put_str(uint8_t *p, const char *s, size_t len)
{
    p = mt__put_varint(p, len);
    if (len)
        memcpy(p, s, len);
    return p + len;
}

uint8_t *mt__put_section_header(uint8_t *p, unsigned type, size_t len)
{
    *p++ = (uint8_t)type;
    return mt__put_varint(p, len);
}

uint8_t *mt__put_def_header(uint8_t *p, unsigned type, size_t len)
{
    *p++ = (uint8_t)type;
    return mt__put_varint(p, len);
}

static const LZ4F_preferences_t mt_lz4_prefs = {
    .frameInfo = {.blockSizeID = LZ4F_max4MB,
                  .blockMode = LZ4F_blockLinked,
                  .contentChecksumFlag = LZ4F_contentChecksumEnabled,
                  .frameType = LZ4F_frame},
    .compressionLevel = 0, /* fast */
};

size_t mt__block_bound(size_t raw_len)
{
    /* Frame header, worst-case body, end mark and checksum. */
    return MT_BLOCK_HEADER_SIZE + LZ4F_HEADER_SIZE_MAX +
           LZ4F_compressBound(raw_len, &mt_lz4_prefs) + 8;
}

long mt__block_compress(const uint8_t *raw, size_t raw_len, uint8_t *out,
                        size_t cap, void *cctx)
{
    if (raw_len > MT_MAX_BLOCK_RAW || cap < MT_BLOCK_HEADER_SIZE)
        return MT_ETOOBIG;
    LZ4F_preferences_t prefs = mt_lz4_prefs;
    prefs.frameInfo.contentSize = raw_len;
    uint8_t *dst = out + MT_BLOCK_HEADER_SIZE;
    size_t dcap = cap - MT_BLOCK_HEADER_SIZE, n;
    if (cctx) {
        /* A reused context avoids liblz4's per-frame allocations. */
        size_t h = LZ4F_compressBegin(cctx, dst, dcap, &prefs);
        if (LZ4F_isError(h))
            return MT_ELZ4;
        size_t b = LZ4F_compressUpdate(cctx, dst + h, dcap - h, raw, raw_len,
                                       NULL);
        if (LZ4F_isError(b))
            return MT_ELZ4;
        size_t e = LZ4F_compressEnd(cctx, dst + h + b, dcap - h - b, NULL);
        if (LZ4F_isError(e))
            return MT_ELZ4;
        n = h + b + e;
    } else {
        n = LZ4F_compressFrame(dst, dcap, raw, raw_len, &prefs);
    }
    if (LZ4F_isError(n))
        return MT_ELZ4;
    mt__put_u32le(out, MT_BLOCK_MAGIC);
    mt__put_u32le(out + 4, (uint32_t)n);
    mt__put_u32le(out + 8, (uint32_t)raw_len);
    return (long)(MT_BLOCK_HEADER_SIZE + n);
}
