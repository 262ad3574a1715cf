/* Streaming UTF-8 output of token pieces: bytes of a character split over
 * two tokens are held back until it is complete, and ill-formed sequences
 * become U+FFFD exactly as a one-shot lossy decode of the whole text would
 * (one replacement per maximal invalid subpart). */
#ifndef SR_UTF8_STREAM_H
#define SR_UTF8_STREAM_H

#include <stddef.h>
#include <stdio.h>

typedef struct utf8_stream {
    FILE *out;
    unsigned char pend[4];
    int n, need;
} utf8_stream;

static inline void utf8_stream_init(utf8_stream *u, FILE *out)
{
    u->out = out;
    u->n = u->need = 0;
}

void utf8_stream_write(utf8_stream *u, const char *bytes, size_t len);
/* Ends the stream: an incomplete character left over becomes U+FFFD. */
void utf8_stream_flush(utf8_stream *u);

#endif
