// The chunk plan: chunks tile the sequence exactly, batch 1 is split to fill the GPU, and the
// workspace bound the plugin reserves covers every smaller shape. The one-pass kernel's B/C slabs:
// the copies cover each pair once, and the copy schedule feeds every commit a landed slab.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "scan_plan.h"
#include "unit_test.h"

using namespace mq::scan;

TEST(plan_tiles_the_sequence) {
    for (int64_t batch : {1, 2, 8}) {
        for (int64_t seqlen : {0, 1, 7, 63, 64, 65, 1000, 2048, 8192, 100000}) {
            for (int64_t dim : {1, 1000, 1536, 5120}) {
                for (int64_t dstate : {1, 4, 5, 16, 17, 32, 64}) {
                    ScanPlan const p = plan_chunked_scan(batch, seqlen, dim, dstate);
                    CHECK(p.nchunks >= 1);
                    CHECK(p.chunk_len % kTokenGroup == 0);
                    CHECK(static_cast<int64_t>(p.nchunks) * p.chunk_len >= seqlen);
                    CHECK(static_cast<int64_t>(p.nchunks - 1) * p.chunk_len < std::max<int64_t>(seqlen, 1));
                    CHECK(p.layout.padded() >= dstate);
                    CHECK(p.layout.padded() % 4 == 0);
                    CHECK_EQ(p.state_elems, static_cast<size_t>(batch * (p.nchunks - 1) * dim * p.layout.padded()));
                    CHECK_EQ(p.dtsum_elems, static_cast<size_t>(batch * (p.nchunks - 1) * dim));
                }
            }
        }
    }
}

TEST(plan_splits_batch_one) {
    ScanPlan const p = plan_chunked_scan(1, 2048, 1536, 16);
    CHECK(p.nchunks >= 16);  // 1536 threads alone would fill 12 SMs
    CHECK(p.chunk_len >= kMinChunkLen);
    ScanPlan const big = plan_chunked_scan(64, 2048, 5120, 16);  // already 327k threads
    CHECK_EQ(big.nchunks, 1);
    CHECK_EQ(big.workspace_bytes(), size_t{0});
    ScanPlan const seq = plan_sequential_scan(1, 2048, 1536, 16);
    CHECK_EQ(seq.nchunks, 1);
    CHECK(seq.chunk_len >= 2048);
}

TEST(plan_layouts) {
    CHECK_EQ(prefill_layout(16).states_per_thread, 16);
    CHECK_EQ(prefill_layout(16).threads_per_channel, 1);
    CHECK_EQ(prefill_layout(3).padded(), 4);
    CHECK_EQ(prefill_layout(64).padded(), 64);
    CHECK_EQ(decode_layout(16).threads_per_channel, 4);
    CHECK_EQ(decode_layout(64).padded(), 64);
}

TEST(workspace_bound_covers_smaller_shapes) {
    for (int64_t dstate : {16, 32, 64}) {
        for (int64_t max_batch : {1, 3, 8}) {
            for (int64_t max_seqlen : {64, 65, 700, 2048}) {
                for (int64_t max_dim : {96, 1000, 1536}) {
                    size_t const bound = chunked_workspace_bound(max_batch, max_seqlen, max_dim, dstate);
                    for (int64_t b = 1; b <= max_batch; ++b) {
                        for (int64_t l = 1; l <= max_seqlen; l += 37) {
                            for (int64_t d = 1; d <= max_dim; d += 61) {
                                size_t const need = plan_chunked_scan(b, l, d, dstate).workspace_bytes();
                                if (need > bound) {
                                    CHECK(need <= bound);
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    CHECK(chunked_workspace_bound(1, 1 << 20, 1536, 16) <= size_t{kTargetThreads} * 17 * 4);  // a constant cap
    CHECK_EQ(chunked_workspace_bound(0, 10, 10, 16), size_t{0});
}

// ---- the one-pass kernel's B/C slabs (onepass_kernel.cuh, NOTES_onepass.md section 8) ---------

TEST(onepass_slab_copies_cover_each_pair_once) {
    for (std::size_t act_bytes : {std::size_t{2}, std::size_t{4}}) {
        int const pairs = op_slab_pairs(act_bytes);
        CHECK_EQ(pairs, act_bytes == 2 ? 4 : 2);
        int const pair_bytes = static_cast<int>(2 * act_bytes);
        int const slots = static_cast<int>(op_slab_bytes()) / pair_bytes;
        int const per_matrix = kOpChunk / op_slab_copy_pos(0, 1, pairs);
        std::vector<int> hits(static_cast<std::size_t>(slots), 0);
        for (int m = 0; m < 2; ++m) {
            for (int tid = 0; tid < kOpThreads; ++tid) {
                for (int k = 0; k < per_matrix; ++k) {
                    int const r = op_slab_copy_pos(tid, k, pairs);
                    CHECK(r >= 0 && r < kOpChunk);
                    int const off = op_slab_offset(m, op_slab_copy_pair(tid, pairs), r, pairs);
                    CHECK(off >= 0 && off < slots);
                    if (off >= 0 && off < slots) ++hits[static_cast<std::size_t>(off)];
                }
            }
        }
        int once = 0;
        for (int h : hits) {
            CHECK(h <= 1);
            once += h == 1;
        }
        CHECK_EQ(once, 2 * pairs * kOpChunk);
        // The commit: thread tid reads positions 4 tid .. 4 tid + 3 of each (matrix, pair), 16-byte aligned.
        for (int tid = 0; tid < kOpThreads; ++tid) {
            for (int m = 0; m < 2; ++m) {
                for (int j = 0; j < pairs; ++j) {
                    int const off = op_slab_offset(m, j, 4 * tid, pairs);
                    CHECK_EQ((off * pair_bytes) % 16, 0);
                    for (int q = 0; q < 4; ++q) CHECK_EQ(hits[static_cast<std::size_t>(off + q)], 1);
                }
            }
        }
        // 16-bit: the 32 copies of a warp instruction write 32 distinct banks.
        if (pairs == 4) {
            for (int warp = 0; warp < kOpWarps; ++warp) {
                for (int k = 0; k < per_matrix; ++k) {
                    unsigned banks = 0;
                    for (int lane = 0; lane < 32; ++lane) {
                        int const tid = 32 * warp + lane;
                        banks |= 1u << (op_slab_offset(1, op_slab_copy_pair(tid, pairs), op_slab_copy_pos(tid, k, pairs), pairs) % 32);
                    }
                    CHECK_EQ(banks, 0xffffffffu);
                }
            }
        }
    }
}

namespace {

// What the slab buffer holds, in the order the kernel acts on it: copies issued, waited for (each
// thread its own), made visible by a barrier, read by commits, overwritten by the next slab.
struct SlabBuffer {
    int ngroups;
    int pairs;
    int chunk = -1;
    int slab = -1;
    bool landed = false;
    bool visible = false;
    bool barrier_since_commit = true;
    int committed = 0;  // groups committed so far, flattened over chunks
    bool ok = true;

    void issue(int c, int s) {
        int const want_chunk = committed / ngroups;
        int const want_group = committed % ngroups;
        // Every group of the slab being replaced is committed, every thread is past its commit,
        // and the copy is the slab the next group to commit needs.
        ok = ok && barrier_since_commit && !(chunk == want_chunk && slab == want_group / pairs);
        ok = ok && c == want_chunk && s == want_group / pairs;
        chunk = c;
        slab = s;
        landed = visible = false;
    }
    void wait() { landed = true; }
    void barrier() {
        visible = visible || landed;
        barrier_since_commit = true;
    }
    void commit(int c, int g) {
        ok = ok && c * ngroups + g == committed && chunk == c && slab == g / pairs && visible;
        ++committed;
        barrier_since_commit = false;
    }
};

// The prologue and the group loop of onepass_scan_kernel, reduced to their slab actions.
bool replay_slab_schedule(int nchunks, int ngroups, int pairs) {
    SlabBuffer buf{ngroups, pairs};
    buf.issue(0, 0);
    buf.wait();
    buf.barrier();
    buf.commit(0, 0);
    OpGroupStep const first = op_group_step(0, -1, nchunks, ngroups, pairs);
    buf.ok = buf.ok && first.next_exists && first.next_chunk == 0 && first.next_group == 0 && first.wait_slab;
    if (first.issue) {
        buf.barrier();
        buf.issue(first.issue_chunk, first.issue_slab);
    }
    for (int c = 0; c < nchunks; ++c) {
        for (int g = 0; g < ngroups; ++g) {
            OpGroupStep const step = op_group_step(c, g, nchunks, ngroups, pairs);
            if (step.wait_slab) buf.wait();
            buf.barrier();  // the first state's
            if (step.next_exists) buf.commit(step.next_chunk, step.next_group);
            buf.barrier();  // the second state's, or the odd-N break's
            if (step.issue) buf.issue(step.issue_chunk, step.issue_slab);
        }
    }
    return buf.ok && buf.committed == nchunks * ngroups;
}

}  // namespace

TEST(onepass_slab_schedule_commits_every_group_from_a_landed_slab) {
    for (int pairs : {2, 4}) {
        for (int nchunks = 1; nchunks <= 4; ++nchunks) {
            for (int ngroups = 1; ngroups <= 33; ++ngroups) {  // N = 1 .. 66
                if (!replay_slab_schedule(nchunks, ngroups, pairs)) {
                    CHECK_EQ(std::to_string(nchunks) + " chunks, " + std::to_string(ngroups) + " groups, " +
                            std::to_string(pairs) + " pairs",
                        std::string("a schedule that holds"));
                }
            }
        }
    }
    // Copies are issued once per slab, not per group: 16 states, 16-bit, 4 chunks = 2 slabs a chunk.
    int issues = 0;
    for (int c = 0; c < 4; ++c) {
        for (int g = 0; g < 8; ++g) issues += op_group_step(c, g, 4, 8, 4).issue;
    }
    CHECK_EQ(issues + op_group_step(0, -1, 4, 8, 4).issue + 1, 4 * 2);
}
