/* ws_frame: the two things a WebSocket server must do differently from
 * a client.
 *
 * Section 10 ("WebSocket"). The toolkit does not serve WebSocket; this
 * program is the two pieces of RFC 6455 where the server's side differs:
 *   the handshake  the server proves it read the client's
 *                  Sec-WebSocket-Key by answering Sec-WebSocket-Accept:
 *                  base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
 *                  (4.2.2: the key as the client sent it, its 24
 *                  characters, the GUID appended, the 20 bytes of the
 *                  digest encoded, not their hex)
 *   the frames     a client masks every frame it sends (a 4-byte key
 *                  XOR-ed over the payload, the MASK bit set); a server
 *                  masks none, and a client must close the connection if
 *                  it receives a masked frame (5.1)
 * The client's side is written (client_frame, and read_frame, which
 * applies both rules as a client or a server would); the server's is
 * not: ws_accept is missing and server_frame masks its frames, the
 * classic misreading "frames are masked in both directions". Usage:
 * ws_frame [KEY] (default: RFC 6455's example key). It prints
 *   accept for dGhlIHNhbXBsZSBub25jZQ==: (not written yet)
 *   server frame for "Hello": 81 85 ...
 *   a client reads it: rejected: a server must not mask (RFC 6455 5.1)
 *   client frame for "Hello": 81 85 37 fa 21 3d 7f 9f 4d 51 58
 *   the server reads it: text "Hello", masked: accepted
 * Exercise s10-ws writes the server's side: the accept value of RFC
 * 6455's example is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=, and the frame a server
 * sends for "Hello" is 81 05 48 65 6c 6c 6f (RFC 6455 5.7). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- Given: SHA-1 (FIPS 180-4) and base64 (RFC 4648), small and slow ---- */

static uint32_t rol(uint32_t x, int n) { return x << n | x >> (32 - n); }

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5a827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ed9eba1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
        else f = b ^ c ^ d, k = 0xca62c1d6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

/* The 20-byte SHA-1 digest of n bytes at data. */
static void sha1(const void *data, size_t n, uint8_t digest[20])
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    const uint8_t *p = data;
    size_t left = n;
    for (; left >= 64; left -= 64, p += 64)
        sha1_block(h, p);
    uint8_t last[128] = {0};
    memcpy(last, p, left);
    last[left] = 0x80;
    size_t blocks = left < 56 ? 1 : 2;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++)
        last[blocks * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t b = 0; b < blocks; b++)
        sha1_block(h, last + 64 * b);
    for (int i = 0; i < 20; i++)
        digest[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

/* base64 of n bytes into out (4 * ((n + 2) / 3) + 1 bytes, with its NUL). */
static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        *out++ = abc[v >> 18 & 63];
        *out++ = abc[v >> 12 & 63];
        *out++ = i + 1 < n ? abc[v >> 6 & 63] : '=';
        *out++ = i + 2 < n ? abc[v & 63] : '=';
    }
    *out = '\0';
}

/* The two tools against known answers (FIPS 180-4's "abc", RFC 4648's
 * "foobar"): 0 if both are right. */
static int tools_work(void)
{
    uint8_t d[20];
    char hex[41], b64[16];
    sha1("abc", 3, d);
    for (int i = 0; i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    base64((const uint8_t *)"foobar", 6, b64);
    return strcmp(hex, "a9993e364706816aba3e25717850c26c9cd0d89d") != 0 ||
           strcmp(b64, "Zm9vYmFy") != 0;
}

/* ---- Given: the client's side ---- */

/* A text frame (FIN, opcode 1) of a payload under 126 bytes, masked with
 * key as a client must. Returns its length. */
static size_t client_frame(const char *text, const uint8_t key[4], uint8_t *out)
{
    size_t n = strlen(text);
    out[0] = 0x81;
    out[1] = 0x80 | (uint8_t)n; /* MASK bit, then the length */
    memcpy(out + 2, key, 4);
    for (size_t i = 0; i < n; i++)
        out[6 + i] = (uint8_t)text[i] ^ key[i % 4];
    return 6 + n;
}

/* Reads one text frame of under 126 bytes as a client (from_server 1) or a
 * server (0) must: a client refuses a masked frame, a server an unmasked
 * one; the payload, unmasked, goes to text. 0, or -1 with *why. */
static int read_frame(const uint8_t *in, size_t len, int from_server, char *text,
                      const char **why)
{
    int masked = in[1] >> 7;
    size_t n = in[1] & 0x7f;
    size_t head = 2 + (masked ? 4 : 0);
    if (len < head || n >= 126 || len != head + n || (in[0] & 0x0f) != 1) {
        *why = "not a short text frame";
        return -1;
    }
    if (from_server && masked) {
        *why = "a server must not mask (RFC 6455 5.1)";
        return -1;
    }
    if (!from_server && !masked) {
        *why = "a client must mask (RFC 6455 5.1)";
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        text[i] = (char)(in[head + i] ^ (masked ? in[2 + i % 4] : 0));
    text[n] = '\0';
    return 0;
}

/* ---- The server's side ---- */

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key, into out (29
 * bytes: 28 characters and the NUL). 0, or -1 if not written yet. */
static int ws_accept(const char *key, char out[29])
{
    (void)key;
    (void)out;
    return -1; /* exercise s10-ws */
}

/* A text frame of a payload under 126 bytes, as the server sends it.
 * Returns its length. */
static size_t server_frame(const char *text, uint8_t *out)
{
    static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    size_t n = strlen(text);
    out[0] = 0x81;
    out[1] = 0x80 | (uint8_t)n; /* "masked in both directions" */
    memcpy(out + 2, key, 4);
    for (size_t i = 0; i < n; i++)
        out[6 + i] = (uint8_t)text[i] ^ key[i % 4];
    return 6 + n;
}

static void print_hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%s%02x", i ? " " : "", p[i]);
    printf("\n");
}

int main(int argc, char **argv)
{
    const char *key = argc > 1 ? argv[1] : "dGhlIHNhbXBsZSBub25jZQ==";
    if (tools_work() != 0) {
        fprintf(stderr, "ws_frame: sha1 or base64 is broken\n");
        return 1;
    }
    char accept[29];
    if (ws_accept(key, accept) == 0)
        printf("accept for %s: %s\n", key, accept);
    else
        printf("accept for %s: (not written yet)\n", key);

    uint8_t frame[256];
    char text[128];
    const char *why = "";
    size_t n = server_frame("Hello", frame);
    printf("server frame for \"Hello\": ");
    print_hex(frame, n);
    if (read_frame(frame, n, 1, text, &why) == 0)
        printf("a client reads it: text \"%s\", unmasked: accepted\n", text);
    else
        printf("a client reads it: rejected: %s\n", why);

    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d}; /* RFC 6455 5.7's */
    n = client_frame("Hello", mask, frame);
    printf("client frame for \"Hello\": ");
    print_hex(frame, n);
    if (read_frame(frame, n, 0, text, &why) == 0)
        printf("the server reads it: text \"%s\", masked: accepted\n", text);
    else
        printf("the server reads it: rejected: %s\n", why);
    return 0;
}
