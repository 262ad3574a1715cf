#include "tools/utf8_stream.h"

static void replacement(utf8_stream *u)
{
    fputs("\xEF\xBF\xBD", u->out);
}

static void push(utf8_stream *u, unsigned char b)
{
    if (u->n == 0) {
        if (b < 0x80) {
            fputc(b, u->out);
            return;
        }
        u->need = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
        if (!u->need) {
            replacement(u);
            return;
        }
        u->pend[u->n++] = b;
        return;
    }
    /* the second byte's range depends on the lead (no overlongs, surrogates, > U+10FFFF) */
    unsigned char lo = 0x80, hi = 0xBF, lead = u->pend[0];
    if (u->n == 1) {
        if (lead == 0xE0) lo = 0xA0;
        else if (lead == 0xED) hi = 0x9F;
        else if (lead == 0xF0) lo = 0x90;
        else if (lead == 0xF4) hi = 0x8F;
    }
    if (b < lo || b > hi) {
        replacement(u);
        u->n = 0;
        push(u, b);
        return;
    }
    u->pend[u->n++] = b;
    if (u->n == u->need) {
        fwrite(u->pend, 1, (size_t)u->n, u->out);
        u->n = 0;
    }
}

void utf8_stream_write(utf8_stream *u, const char *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) push(u, (unsigned char)bytes[i]);
}

void utf8_stream_flush(utf8_stream *u)
{
    if (u->n) replacement(u);
    u->n = 0;
}
