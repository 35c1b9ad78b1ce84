// The chunk plan: chunks tile the sequence exactly, batch 1 is split to fill the GPU, and the
// workspace bound the plugin reserves covers every smaller shape.
#include <cstdint>

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
