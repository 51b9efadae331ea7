"""The allocator setting keeps freed memory: repeated epoch-sized tensors stop faulting."""

import platform
import resource

import pytest
import torch

from actloss_bench.allocator import keep_freed_memory

glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc, reason="mallopt is glibc's")
def test_epoch_sized_tensors_reuse_memory_instead_of_faulting_pages_in():
    assert keep_freed_memory() is True

    def faults_of_allocations(n=50):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            # 16 seeds x 800 rows x 64 units, written once and freed, as an epoch's
            # validation outputs are
            torch.empty(16, 800, 64).fill_(1.0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_allocations(5)  # the first ones grow the heap
    # 3.3 MB is 800 pages: without reuse every allocation faults hundreds of them in.
    assert faults_of_allocations() < 100
