# The landscape dashboard as a hosted demo: docker build -t landscape . && docker run -p 8501:8501 landscape
# Demo mode is on (caps on the work of one request); override caps with -e LANDSCAPE_MAX_K=... etc.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    LANDSCAPE_DEMO=1 \
    PORT=8501

# Hugging Face Spaces run containers as user 1000: it owns the app folder, so numba can write its cache there.
RUN useradd --create-home --uid 1000 app
WORKDIR /home/app/landscape
COPY --chown=app:app . .
RUN pip install -r requirements.txt
USER app

# Compile the ODE solver and the catalogues' flow kernel at build time (numba caches them next to
# the package): the first visitor does not wait ~40 s for the one, the first catalogue ~10 s for the other.
RUN python -c "from landscape.dynamics.ode import compile_ode; compile_ode(); from landscape.critical_points.flow_kernel import warm_up; warm_up()"

EXPOSE 8501
HEALTHCHECK CMD python -c "import urllib.request, os; urllib.request.urlopen(f'http://localhost:{os.environ[\"PORT\"]}/_stcore/health')"
CMD streamlit run app.py --server.port "$PORT" --server.address 0.0.0.0 --server.headless true
