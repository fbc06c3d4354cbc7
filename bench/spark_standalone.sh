#!/usr/bin/env bash
# `tanpu spark-eval` as a spark-submit application on a real Spark standalone cluster
# (a master and a worker, separate JVMs, started here from PySpark's own Spark), shipped
# two ways: an environment archive (venv-pack: the executors' Python with tanpu and its
# dependencies), then the wheel with --py-files (the executors' Python with the
# dependencies only); each run's results compared with `tanpu eval`'s on the same Parquet
# file. docs/spark.md shows a run.
#
#     bench/spark_standalone.sh [N]        # N generated records (default 1000000)
#
# Run from the project's root after `make install` (the .venv's PySpark is the cluster's
# Spark, its Python generates the records and runs `tanpu eval`). Everything goes under
# $WORK (default /tmp/tanpu-spark-standalone), deleted at the end unless KEEP=1; the master
# and the worker are stopped at the end, whatever happens. Ports: $PORT (7077) on
# 127.0.0.1, the web UIs on $UI_PORT and $UI_PORT+1 (18080).
set -euo pipefail

N="${1:-1000000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WORK="${WORK:-/tmp/tanpu-spark-standalone}"
PORT="${PORT:-7077}"
UI_PORT="${UI_PORT:-18080}"
VENV="$ROOT/.venv"
export SPARK_HOME="$("$VENV/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')"
export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_DIRS="$WORK/local" SPARK_LOG_DIR="$WORK/logs"
export SPARK_WORKER_DIR="$WORK/worker" TMPDIR="$WORK/tmp"
export SPARK_DAEMON_JAVA_OPTS="-Djava.io.tmpdir=$WORK/tmp"  # the master's and worker's temporary files
METHODOLOGY="$ROOT/methodologies/shenzhen-public-transit.tanpu"

mkdir -p "$WORK" "$SPARK_LOCAL_DIRS" "$SPARK_LOG_DIR" "$SPARK_WORKER_DIR" "$TMPDIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n$ %s\n' "$*"; }

step "pip wheel --no-deps . -w $WORK/dist"
"$VENV/bin/pip" wheel -q --no-deps "$ROOT" -w "$WORK/dist" 2>/dev/null
ls "$WORK/dist"
WHEEL="$(ls "$WORK"/dist/tanpu-*.whl)"

# The executors' Python: tanpu and its dependencies, pandas for PySpark's Arrow functions.
# Not PySpark itself: the executors get it from the cluster's Spark (pyspark.zip).
step "python3 -m venv tanpu-env && tanpu-env/bin/pip install tanpu-*.whl 'pandas>=2.2,<3' venv-pack && venv-pack"
python3 -m venv "$WORK/tanpu-env"
"$WORK/tanpu-env/bin/pip" install -q "$WHEEL" 'pandas>=2.2,<3' venv-pack 2>&1 | grep -v '^WARNING' || true
"$WORK/tanpu-env/bin/venv-pack" -q -p "$WORK/tanpu-env" -o "$WORK/tanpu-env.tar.gz"
ls -l "$WORK/tanpu-env.tar.gz" | awk '{print $5, $9}'

step "records: $N generated rides (bench_engine.typed_frame) -> $WORK/rides.parquet"
"$VENV/bin/python" - "$N" "$WORK/rides.parquet" <<'EOF'
import sys
sys.path[:0] = ["bench", "."]
from bench_engine import typed_frame
typed_frame(int(sys.argv[1])).rename({"distance": "distance[km]"}).write_parquet(sys.argv[2])
EOF

step "spark-class org.apache.spark.deploy.master.Master --host 127.0.0.1 --port $PORT &"
"$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
  --host 127.0.0.1 --port "$PORT" --webui-port "$UI_PORT" > "$SPARK_LOG_DIR/master.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 60); do grep -q "I have been elected leader" "$SPARK_LOG_DIR/master.out" && break; sleep 1; done
grep -o "Starting Spark master at .*\|I have been elected leader.*" "$SPARK_LOG_DIR/master.out" || true

step "spark-class org.apache.spark.deploy.worker.Worker spark://127.0.0.1:$PORT --cores 2 --memory 3g &"
"$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker "spark://127.0.0.1:$PORT" \
  --host 127.0.0.1 --cores 2 --memory 3g --webui-port "$((UI_PORT + 1))" --work-dir "$SPARK_WORKER_DIR" \
  > "$SPARK_LOG_DIR/worker.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 60); do grep -q "Successfully registered with master" "$SPARK_LOG_DIR/worker.out" && break; sleep 1; done
grep -o "Starting Spark worker .*\|Successfully registered with master.*" "$SPARK_LOG_DIR/worker.out" || true

APP="$WORK/tanpu-env/lib/python3.11/site-packages/tanpu/spark.py"
step "spark-submit --master spark://127.0.0.1:$PORT --archives tanpu-env.tar.gz#environment ... tanpu/spark.py"
START=$(date +%s%N)
PYSPARK_DRIVER_PYTHON="$WORK/tanpu-env/bin/python" \
"$SPARK_HOME/bin/spark-submit" --master "spark://127.0.0.1:$PORT" \
  --archives "$WORK/tanpu-env.tar.gz#environment" \
  --conf spark.pyspark.python=./environment/bin/python \
  --conf spark.pyspark.driver.python="$WORK/tanpu-env/bin/python" \
  --driver-java-options "-Djava.io.tmpdir=$WORK/tmp" \
  --conf spark.executor.extraJavaOptions="-Djava.io.tmpdir=$WORK/tmp" \
  --total-executor-cores 2 --executor-memory 2g \
  --conf spark.sql.shuffle.partitions=8 \
  --conf spark.sql.execution.arrow.maxRecordsPerBatch=65536 \
  --conf spark.executorEnv.POLARS_MAX_THREADS=1 \
  --conf spark.ui.showConsoleProgress=false \
  "$APP" "$METHODOLOGY" "$WORK/rides.parquet" -o "$WORK/credits" 2> "$WORK/submit.err" \
  || { tail -50 "$WORK/submit.err"; exit 1; }
grep -v -E "WARN|INFO|^\s*$|log4j|setLogLevel" "$WORK/submit.err" || true
echo "spark-submit: $(( ($(date +%s%N) - START) / 1000000 )) ms wall, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "the application's executor (from the worker's log):"
grep -o "Asked to launch executor .*\|Executor app-[^ ]* finished with state .*" "$SPARK_LOG_DIR/worker.out" || true
echo "the executor's folder (the archive unpacked as ./environment):"
ls "$SPARK_WORKER_DIR"/app-*/*/ 2>/dev/null || true

step "tanpu eval $METHODOLOGY rides.parquet -o eval.parquet"
START=$(date +%s%N)
"$VENV/bin/tanpu" eval "$METHODOLOGY" "$WORK/rides.parquet" -o "$WORK/eval.parquet"
echo "tanpu eval: $(( ($(date +%s%N) - START) / 1000000 )) ms wall, load $(cut -d' ' -f1-3 /proc/loadavg)"

compare() {
  step "compare $1 with tanpu eval's: rows, a hash of every row's (row, id, account, status, code, reduction_mg, points), totals"
  "$VENV/bin/python" - "$WORK/$1" "$WORK/eval.parquet" <<'EOF'
import sys
sys.path[:0] = ["bench"]
from bench_spark import fingerprint
cluster, local = fingerprint(f"{sys.argv[1]}/*.parquet"), fingerprint(sys.argv[2])
print("spark standalone:", cluster)
print("tanpu eval:      ", local)
print("identical:", cluster == local)
sys.exit(0 if cluster == local else 1)
EOF
}
compare credits

# The other way: the executors' Python has the dependencies but not tanpu (a managed
# platform's image), and the wheel is shipped with --py-files. Spark puts only .zip, .egg
# and .jar files on the executors' path, so the wheel (a zip) goes as tanpu.zip; its
# compiled text readers cannot be loaded from a zip (one RuntimeWarning a worker, NumPy
# readers instead, same results); the methodology's kernel is still compiled.
step "tanpu-env/bin/python -m pip uninstall tanpu; cp tanpu-*.whl tanpu.zip; spark-submit --py-files tanpu.zip ..."
"$WORK/tanpu-env/bin/python" -m pip uninstall -q -y tanpu 2>&1 | grep -v '^WARNING' || true
cp "$WHEEL" "$WORK/tanpu.zip"
"$WORK/tanpu-env/bin/python" -c 'import zipfile, sys; zipfile.ZipFile(sys.argv[1]).extract("tanpu/spark.py", sys.argv[2])' \
  "$WORK/tanpu.zip" "$WORK/app"
START=$(date +%s%N)
PYSPARK_DRIVER_PYTHON="$WORK/tanpu-env/bin/python" \
"$SPARK_HOME/bin/spark-submit" --master "spark://127.0.0.1:$PORT" \
  --py-files "$WORK/tanpu.zip" \
  --conf spark.pyspark.python="$WORK/tanpu-env/bin/python" \
  --driver-java-options "-Djava.io.tmpdir=$WORK/tmp" \
  --conf spark.executor.extraJavaOptions="-Djava.io.tmpdir=$WORK/tmp" \
  --total-executor-cores 2 --executor-memory 2g \
  --conf spark.sql.shuffle.partitions=8 \
  --conf spark.executorEnv.POLARS_MAX_THREADS=1 \
  --conf spark.ui.showConsoleProgress=false \
  "$WORK/app/tanpu/spark.py" "$METHODOLOGY" "$WORK/rides.parquet" -o "$WORK/credits-py-files" \
  2> "$WORK/submit-py-files.err" || { tail -50 "$WORK/submit-py-files.err"; exit 1; }
grep -v -E "WARN|INFO|^\s*$|log4j|setLogLevel" "$WORK/submit-py-files.err" || true
echo "spark-submit: $(( ($(date +%s%N) - START) / 1000000 )) ms wall, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "the executors' warnings:"
grep -h -o "RuntimeWarning: .*NumPy instead" "$SPARK_WORKER_DIR"/app-*/*/stderr | sort | uniq -c || true
compare credits-py-files
