/* A WAGI handler in C: Spin's WAGI executor passes the request as CGI (environment variables,
 * body on stdin) and reads headers, a blank line, then the body from stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GREETING "Hello from C"

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

int main(void) {
    const char *method = env_or("REQUEST_METHOD", "GET");
    const char *path = env_or("PATH_INFO", "/");
    const char *query = env_or("QUERY_STRING", "");

    /* Guest stderr lands in wasmdev's log stream, tagged with the app and the request. */
    fprintf(stderr, "hello-c: %s %s\n", method, path);

    printf("Content-Type: text/plain; charset=utf-8\n\n");
    printf("%s (WAGI, wasm32-wasi)\n", GREETING);
    printf("method=%s path=%s", method, path);
    if (*query) printf(" query=%s", query);
    printf("\n");
    return 0;
}
