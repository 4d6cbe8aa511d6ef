/* resolve: the URL's host and port as socket addresses, for the
 * connections loadgen opens itself (--engine raw's, --stall's; curl
 * resolves its own), and the check --sources needs. */
#include "loadgen.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct addrinfo *resolve_url(CURLU *u)
{
    char *host = NULL, *port = NULL;
    struct addrinfo *ai = NULL;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
            CURLUE_OK) {
        char *h = host;
        size_t hl = strlen(h);
        if (hl > 1 && h[0] == '[' && h[hl - 1] == ']') { /* [::1] */
            h[hl - 1] = '\0';
            h++;
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
        int rc = getaddrinfo(h, port, &hints, &ai);
        if (rc != 0) {
            fprintf(stderr, "loadgen: %s: %s\n", h, gai_strerror(rc));
            ai = NULL;
        }
    }
    curl_free(host);
    curl_free(port);
    return ai;
}

bool url_is_ipv4_loopback(CURLU *u)
{
    struct addrinfo *ai = resolve_url(u);
    if (!ai)
        return false;
    bool ok = ai->ai_family == AF_INET &&
              (ntohl(((const struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr)
               >> 24) == 127;
    freeaddrinfo(ai);
    if (!ok)
        fprintf(stderr, "loadgen: --sources opens connections from "
                        "127.0.0.2 and up, which reach only an IPv4 loopback "
                        "address: give the URL as http://127.0.0.1:PORT/\n");
    return ok;
}
