# sbatch job 1: sbatch --export=ALL,RUN_OFFSET=0 <script>
#!/bin/bash
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=2G
#SBATCH --nodes=1
#SBATCH --partition=cpu-long
#SBATCH --job-name=moxin-data-analyze
#SBATCH --time=12:00:00
#SBATCH --output=<ROOT>/runs/slurm/.scale/<FP>-512t/logs/slurm_logs/%A_%a.out
#SBATCH --error=<ROOT>/runs/slurm/.scale/<FP>-512t/logs/slurm_logs/%A_%a.out
#SBATCH --array=0-511
#SBATCH --requeue
echo "Starting data processing job moxin-data-analyze"

set -xe
export PYTHONUNBUFFERED=TRUE
srun  -l -n 1 launch_pickled_pipeline <ROOT>/runs/slurm/.scale/<FP>-512t/logs/executor.pik
# sbatch job 2: sbatch <script>
#!/bin/bash
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=1G
#SBATCH --nodes=1
#SBATCH --partition=cpu-long
#SBATCH --job-name=moxin-data-analyze
#SBATCH --time=12:00:00
#SBATCH --output=<ROOT>/runs/slurm/.scale/<FP>-512t/logs/slurm_logs/%A_%a.out
#SBATCH --error=<ROOT>/runs/slurm/.scale/<FP>-512t/logs/slurm_logs/%A_%a.out
#SBATCH --array=0-0
#SBATCH --requeue
#SBATCH --dependency=afterok:DRYRUN-1
echo "Starting data processing job moxin-data-analyze"

set -xe
export PYTHONUNBUFFERED=TRUE
merge_stats <ROOT>/runs/slurm/.scale/<FP>-512t/logs/stats -o <ROOT>/runs/slurm/.scale/<FP>-512t/logs/stats.json
# sbatch job 3: sbatch --export=ALL,RUN_OFFSET=0 --dependency=afterok:DRYRUN-1 <script>
#!/bin/bash
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=2G
#SBATCH --nodes=1
#SBATCH --partition=cpu-long
#SBATCH --job-name=moxin-data-merge
#SBATCH --time=12:00:00
#SBATCH --output=<ROOT>/runs/slurm/.scale/<FP>-512t/merge-logs/slurm_logs/%A_%a.out
#SBATCH --error=<ROOT>/runs/slurm/.scale/<FP>-512t/merge-logs/slurm_logs/%A_%a.out
#SBATCH --array=0-0
#SBATCH --requeue
echo "Starting data processing job moxin-data-merge"

set -xe
export PYTHONUNBUFFERED=TRUE
srun  -l -n 1 launch_pickled_pipeline <ROOT>/runs/slurm/.scale/<FP>-512t/merge-logs/executor.pik
# sbatch job 4: sbatch <script>
#!/bin/bash
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=1G
#SBATCH --nodes=1
#SBATCH --partition=cpu-long
#SBATCH --job-name=moxin-data-merge
#SBATCH --time=12:00:00
#SBATCH --output=<ROOT>/runs/slurm/.scale/<FP>-512t/merge-logs/slurm_logs/%A_%a.out
#SBATCH --error=<ROOT>/runs/slurm/.scale/<FP>-512t/merge-logs/slurm_logs/%A_%a.out
#SBATCH --array=0-0
#SBATCH --requeue
#SBATCH --dependency=afterok:DRYRUN-3
echo "Starting data processing job moxin-data-merge"

set -xe
export PYTHONUNBUFFERED=TRUE
merge_stats <ROOT>/runs/slurm/.scale/<FP>-512t/merge-logs/stats -o <ROOT>/runs/slurm/.scale/<FP>-512t/merge-logs/stats.json
