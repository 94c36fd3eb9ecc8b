/* HTTP requests to the gateway's own endpoints (gateway/http.c: /healthz, /metrics, the
 * dashboard page and /api/dashboard with the token check by header, query or cookie,
 * method and body refusals): a real gateway runs inside the harness (its server loop
 * on a thread, store and keys in a temp dir, keys made by the build's cpxctl), and
 * each input is sent as raw bytes over a real loopback TCP connection to its
 * libmicrohttpd listener, then the answer is read until the gateway closes and has
 * released the connection (its thread joined, its response freed), so libFuzzer's
 * per-input leak check never runs while a request is in flight and needs no
 * suppressions. Dashboard views are written to the audit log by the server loop as in
 * production. Nothing may crash, leak, read out of bounds or hang. Seeds: the requests
 * an office browser, a Prometheus scraper and a load balancer send (with the token
 * below), and refusals. */
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
#include "http.h"
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

/* Each request is a new connection and the gateway closes first, so its side keeps the
 * pair of ports in TIME_WAIT for a minute: at ~900 connections a second loopback runs out
 * of ephemeral ports after a few minutes and connect() fails until some expire. Wait for
 * that (up to 10 s) rather than report the harness's own limit as a crash. The socket
 * gets 5-s send and receive timeouts. */
static int connect_retry(void)
{
    int s = -1;
    for (int i = 0; i < 1000 && (s = connect_gw()) < 0; i++)
        usleep(10000);
    if (s < 0)
        abort();
    struct timeval tv = {.tv_sec = 5};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return s;
}

/* Reads until the gateway closes; aborts when it does not answer within 5 s.
 * libFuzzer's SIGALRM (its -timeout watchdog, every few seconds) interrupts the read now
 * and then, and a socket with a timeout is never restarted (signal(7)): EINTR is retried,
 * or the input would end while the gateway is still answering it. */
static void read_to_close(int s)
{
    char buf[8192];
    ssize_t r;
    while ((r = recv(s, buf, sizeof buf, 0)) > 0 || (r < 0 && errno == EINTR))
        ;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        fprintf(stderr, "fuzz_gw_http: no answer within 5 s\n");
        abort();
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Returns once the gateway has released every connection but one empty one of its own:
 * each released connection's thread joined (its exit frees the thread's hash context),
 * its response destroyed and its buffers freed. So libFuzzer's per-input leak check,
 * which runs right after the input, never sees a request still in flight.
 *
 * Seeing the close is not enough: libmicrohttpd sends it before its thread ends, and its
 * listener thread releases closed connections only when it next wakes, i.e. when it
 * accepts the next connection. So open an empty connection (close our side, read the
 * gateway's close: it has been accepted) and ask whether it is the only one left; a
 * thread that had not quite ended when the listener woke is caught by the next round.
 * Aborts after 5 s: a connection the gateway never lets go is a bug. */
static void wait_released(void)
{
    int64_t deadline = now_ms() + 5000;
    do {
        int s = connect_retry();
        shutdown(s, SHUT_WR);
        read_to_close(s);
        close(s);
        if (cpx_gw_http_connections(gw->http) <= 1)
            return;
        usleep(200);
    } while (now_ms() < deadline);
    fprintf(stderr, "fuzz_gw_http: the gateway still holds a closed connection after 5 s\n");
    abort();
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
            wait_released();
            return;
        }
        usleep(10000);
    }
    fprintf(stderr, "fuzz_gw_http: the gateway's HTTP listener did not come up\n");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!gw)
        start_gateway();
    int s = connect_retry();
    /* EINTR: see read_to_close */
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(s, data + off, size - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* the gateway closed early: fine, it refused the request */
        off += (size_t)w;
    }
    shutdown(s, SHUT_WR);
    read_to_close(s);
    close(s);
    wait_released();
    return 0;
}
