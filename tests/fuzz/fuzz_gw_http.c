/* HTTP requests to the gateway's own endpoints (gateway/http.c: /healthz, /metrics, the
 * dashboard page and /api/dashboard with the token check by header, query or cookie,
 * method and body refusals): a real gateway runs inside the harness (its server loop
 * on a thread, store and keys in a temp dir, keys made by the build's cpxctl), and
 * each input is sent as raw bytes over a real loopback TCP connection to its
 * libmicrohttpd listener, then the answer is read until the gateway closes. Dashboard
 * views are written to the audit log by the server loop as in production. Nothing may
 * crash, leak, read out of bounds or hang. Seeds: the requests an office browser, a
 * Prometheus scraper and a load balancer send (with the token below), and refusals. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "server.h"
#include "cpx/log.h"

/* the seeds' dashboard token: fuzz-dashboard-token-0123456789abcdef */
#define TOKEN_SHA256 "fdaeed313fd71651577bc099aa5c7ef12aa9893ae48a819b33f9700266972abc"

static unsigned port;
static cpx_gw_t *gw;

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

static void *serve(void *arg)
{
    (void)arg;
    cpx_gw_server_run(gw);
    return NULL;
}

static int connect_gw(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
        return s;
    if (s >= 0)
        close(s);
    return -1;
}

static char gw_dir[64];
static pthread_t server_thread;

static void stop_gateway(void)
{
    cpx_gw_server_stop();
    pthread_join(server_thread, NULL);
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", gw_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_gw_http: could not remove %s\n", gw_dir);
}

/* Keys by cpxctl, a configuration with the dashboard on, the server loop started;
 * aborts when any step fails (a harness that tests nothing must not pass). */
static void start_gateway(void)
{
    char *dir = gw_dir, cmd[512], path[128];
    snprintf(gw_dir, sizeof gw_dir, "/tmp/cpx-fuzz-gw.%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/keys && %s/tools/cpxctl keygen GATEWAY --dir %s/keys >/dev/null",
             dir, dir, CPX_BINARY_DIR, dir);
    if (system(cmd) != 0)
        abort();
    atexit(remove_dir); /* libFuzzer ends a timed run with exit() */
    port = free_port();
    snprintf(path, sizeof path, "%s/gateway.yaml", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fprintf(f, "endpoint: tcp://127.0.0.1:0\ndata_dir: data\nmap_size: 64MiB\n"
               "keys:\n  curve_secret: keys/GATEWAY.curve.key\n  signing_key: keys/GATEWAY.sign.key\n"
               "  store_key: keys/GATEWAY.store.key\n  signer: in-process\n"
               "log_level: error\n"
               "http:\n  listen: 127.0.0.1:%u\n  verify_interval_s: 0\n  users:\n"
               "    - name: office-fuzz\n      token_sha256: %s\n", port, TOKEN_SHA256);
    fclose(f);
    cpx_gw_config_t cfg;
    char err[1024];
    cpx_gw_config_defaults(&cfg);
    if (cpx_gw_config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_gw_http: %s\n", err);
        abort();
    }
    if (!(gw = cpx_gw_server_new(&cfg)))
        abort();
    if (pthread_create(&server_thread, NULL, serve, NULL))
        abort();
    /* Registered after OpenSSL's own exit handler, so it runs first: the server loop
     * (which signs heads) stops before libcrypto is torn down at the end of a timed run. */
    atexit(stop_gateway);
    for (int i = 0; i < 500; i++) {
        int s = connect_gw();
        if (s >= 0) {
            close(s);
            return;
        }
        usleep(10000);
    }
    fprintf(stderr, "fuzz_gw_http: the gateway's HTTP listener did not come up\n");
    abort();
}

/* LeakSanitizer: each libmicrohttpd connection thread keeps its SHA-256 context in
 * thread-specific data that the key's destructor frees when the thread exits; libFuzzer's
 * per-input leak check can look just before that exit. Only that allocation is excused. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:cpx_sha256\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!gw)
        start_gateway();
    /* Each request is a new connection and the gateway closes first, so its side keeps
     * the pair of ports in TIME_WAIT for a minute: at ~900 requests a second loopback runs
     * out of ephemeral ports after a few minutes and connect() fails until some expire.
     * Wait for that (up to 10 s) rather than report the harness's own limit as a crash. */
    int s = -1;
    for (int i = 0; i < 1000 && (s = connect_gw()) < 0; i++)
        usleep(10000);
    if (s < 0)
        abort();
    struct timeval tv = {.tv_sec = 5};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(s, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the gateway closed early: fine, it refused the request */
        off += (size_t)w;
    }
    shutdown(s, SHUT_WR);
    char buf[8192];
    ssize_t r;
    while ((r = recv(s, buf, sizeof buf, 0)) > 0)
        ;
    int timed_out = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    close(s);
    if (timed_out) {
        fprintf(stderr, "fuzz_gw_http: no answer within 5 s\n");
        abort();
    }
    return 0;
}
