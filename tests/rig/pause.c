/* The pod sandbox's process: it holds the pod's namespaces and does nothing else.
 *
 * PID 1 of every pod's sandbox: it sleeps, reaps the zombies the pod's processes leave to
 * it (a shared PID namespace makes it their parent), and exits 0 when the runtime stops the
 * sandbox with SIGINT or SIGTERM. Built static (gcc -static -Os) into a FROM scratch image
 * named registry.k8s.io/pause:3.10, the sandbox image the local cluster's containerd uses.
 */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signo) {
    (void)signo;
    _exit(0);
}

static void reap(int signo) {
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static void on(int signo, void (*handler)(int), int flags) {
    struct sigaction action = {0};
    action.sa_handler = handler;
    action.sa_flags = flags;
    sigemptyset(&action.sa_mask);
    if (sigaction(signo, &action, NULL) != 0) {
        _exit(1);
    }
}

int main(void) {
    on(SIGINT, stop, 0);
    on(SIGTERM, stop, 0);
    on(SIGCHLD, reap, SA_NOCLDSTOP | SA_RESTART);
    for (;;) {
        pause();
    }
}
