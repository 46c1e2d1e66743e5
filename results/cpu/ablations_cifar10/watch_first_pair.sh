#!/bin/bash
# Stop the ablation sweep once its first pair has finished: the next pair could not finish in
# this session, and the CPU goes to shorter jobs. The sweep resumes where it stopped.
d=~/nin-runs/ablations_cifar10
while true; do
  for m in nin_cifar10 nin_cifar10_fc; do
    if [ -f "$d/model=$m-seed=0/result.json" ] && [ ! -f ~/nin-runs/stopped-$m ]; then
      # this rank's sweep has moved on: stop its process (the one whose log names the next run)
      touch ~/nin-runs/stopped-$m
    fi
  done
  if [ -f ~/nin-runs/stopped-nin_cifar10 ] && [ -f ~/nin-runs/stopped-nin_cifar10_fc ]; then
    pkill -INT -f "nin sweep /root/nin-runs/ablations_cifar10.json"; echo "stopped $(date)" > ~/nin-runs/first-pair.done; exit 0
  fi
  sleep 20
done
