/* HTTP requests to the http connector's webhook (adapters/http/http.c: POST
 * /v1/messages with a bearer token and a JSON body) of a real adapter, over a real
 * loopback TCP connection to the connector's libmicrohttpd daemon. Each input is the
 * raw request bytes (request line, headers, body); the harness sends them, closes
 * its side, and runs the adapter's cycle until the connector has answered and closed.
 * Method and path routing, the token check, body size limits, JSON mapping, spooling
 * and the answer after the commit all run as in production. Nothing may crash, leak
 * or read out of bounds. Seeds: real requests carrying the bodies of the
 * adapter_json corpus, with and without the token. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapter_rig.h"

extern const cpx_connector_t cpx_connector_http;

/* the token the seeds carry (tests/fuzz/corpus/adapter_webhook) */
#define TOKEN "fuzz-webhook-token-0123456789abcdef"

static char conf_text[512];
static unsigned port;

static unsigned free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) || getsockname(s, (struct sockaddr *)&sa, &len))
        abort();
    close(s);
    return ntohs(sa.sin_port);
}

static void configure(void)
{
    port = free_port();
    snprintf(conf_text, sizeof conf_text, "http:\n  listen: 127.0.0.1:%u\n  token_file: token\n", port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rig.conf_path[0]) {
        rig_init(&cpx_connector_http, "http");
        char tpath[128];
        snprintf(tpath, sizeof tpath, "%s/token", rig.dir);
        rig_write(tpath, TOKEN "\n");
        configure();
        rig_start(conf_text);
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s < 0 || (connect(s, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS))
        abort();
    size_t off = 0, got = 0;
    int closed = 0, idle = 0;
    char buf[4096];
    /* send, then read the answer; the adapter cycles in between, since the daemon runs
     * inside its cycle. Done when the connector closes, or once an answer has come and
     * nothing more follows for a while (libmicrohttpd may hold a kept-alive connection
     * until its timeout even after our half-close, and does not answer a request that
     * never completed: its 30 s connection timeout closes those, so after 200 quiet
     * cycles the harness moves on). */
    while (!closed && !(got && idle > 20) && !(off == size && idle > 200)) {
        if (cpx_adapter_cycle(rig.a, 0) != CPX_OK)
            abort();
        if (off < size) {
            ssize_t w = send(s, data + off, size - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN)
                off = size; /* the connector closed early (e.g. a bad request line) */
            if (off == size)
                shutdown(s, SHUT_WR);
        }
        idle++;
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 1) > 0) {
            ssize_t r = recv(s, buf, sizeof buf, 0);
            if (r > 0)
                got += (size_t)r, idle = 0;
            else if (r == 0 || errno != EAGAIN)
                closed = 1;
        }
    }
    close(s);
    if (rig.inputs + 1 >= RIG_INPUTS)
        configure(); /* the next adapter listens on a fresh port */
    rig_next(conf_text);
    return 0;
}
