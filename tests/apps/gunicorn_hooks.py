"""A gunicorn config file (``-c``) whose worker hooks print, so tests can see them run."""


def post_worker_init(worker):
    print(f"hook post_worker_init {worker.pid}", flush=True)


def worker_int(worker):
    print(f"hook worker_int {worker.pid}", flush=True)


def worker_abort(worker):
    print(f"hook worker_abort {worker.pid}", flush=True)
