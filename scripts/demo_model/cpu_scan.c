/* The selective scan's forward and backward for CPU training (scripts/demo_model/train.py --fast-scan).
 *
 * The PyTorch scan (mq_deploy/ops/selective_scan.py) issues a few tensor ops per token, each a pass
 * over a [batch, N, D] state in memory; here each thread keeps a [N, TILE] slice of the state in
 * L1 for the whole sequence, so a step costs one exp2 and a few FMAs per state element. The math is
 * _FusedScan's, in float32, state-major ([N, D] with D innermost, which the compiler vectorizes):
 *
 *   h_t = exp2(dt_t * A2) * h_{t-1} + B_t dtx_t       y_t = <h_t, C_t>     (A2 = A * log2 e)
 *   g_t = C_t dy_t + exp2(dt_{t+1} * A2) * g_{t+1}    (the adjoint, backwards in time)
 *
 * Reductions across channels (dB, dC) and across the batch (dA) are written per tile / per
 * sequence and summed by the caller, so no two threads write one element.
 * Build: cc -O3 -march=native -ffast-math -fopenmp -shared -fPIC cpu_scan.c -o libcpu_scan.so -lm
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#define TILE 64

static int tiles_of(int dim) { return (dim + TILE - 1) / TILE; }

int mq_train_scan_tiles(int dim) { return tiles_of(dim); }

/* dt, dtx, y: [b, L, D]; A2: [N, D]; B, C: [b, L, N]; h0, h_last: [b, N, D];
 * history: [b, L, N, D] (the state after every token) or NULL when no gradient is needed. */
void mq_train_scan_forward(int batch, int length, int dim, int n_state, const float *dt, const float *dtx,
                           const float *A2, const float *B, const float *C, const float *h0, float *y,
                           float *h_last, float *history)
{
    const int tiles = tiles_of(dim);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b) {
        for (int tile = 0; tile < tiles; ++tile) {
            const int d0 = tile * TILE, width = dim - d0 < TILE ? dim - d0 : TILE;
            float h[n_state][TILE];
            for (int n = 0; n < n_state; ++n)
                memcpy(h[n], h0 + ((size_t)b * n_state + n) * dim + d0, width * sizeof(float));
            for (int t = 0; t < length; ++t) {
                const size_t row = (size_t)b * length + t;
                const float *dt_t = dt + row * dim + d0, *dtx_t = dtx + row * dim + d0;
                float acc[TILE] = {0};
                for (int n = 0; n < n_state; ++n) {
                    const float b_n = B[row * n_state + n], c_n = C[row * n_state + n];
                    const float *a = A2 + (size_t)n * dim + d0;
                    float *hn = h[n];
                    for (int j = 0; j < width; ++j) {
                        const float v = exp2f(dt_t[j] * a[j]) * hn[j] + b_n * dtx_t[j];
                        hn[j] = v;
                        acc[j] += v * c_n;
                    }
                    if (history)
                        memcpy(history + (row * n_state + n) * dim + d0, hn, width * sizeof(float));
                }
                memcpy(y + row * dim + d0, acc, width * sizeof(float));
            }
            for (int n = 0; n < n_state; ++n)
                memcpy(h_last + ((size_t)b * n_state + n) * dim + d0, h[n], width * sizeof(float));
        }
    }
}

/* dy: [b, L, D]; dh_last: [b, N, D]; A (natural) and A2: [N, D]; history from the forward.
 * Writes d_dt, d_dtx [b, L, D] and d_h0 [b, N, D] whole; dB_part, dC_part [b, tiles, L, N] and
 * dA_part [b, N, D] are partial sums the caller adds up. */
void mq_train_scan_backward(int batch, int length, int dim, int n_state, const float *dy, const float *dh_last,
                            const float *dt, const float *dtx, const float *A, const float *A2, const float *B,
                            const float *C, const float *h0, const float *history, float *d_dt, float *d_dtx,
                            float *d_h0, float *dB_part, float *dC_part, float *dA_part)
{
    const int tiles = tiles_of(dim);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b) {
        for (int tile = 0; tile < tiles; ++tile) {
            const int d0 = tile * TILE, width = dim - d0 < TILE ? dim - d0 : TILE;
            float g[n_state][TILE], next_decay[n_state][TILE], dA[n_state][TILE];
            for (int n = 0; n < n_state; ++n) {
                memcpy(g[n], dh_last + ((size_t)b * n_state + n) * dim + d0, width * sizeof(float));
                for (int j = 0; j < TILE; ++j) next_decay[n][j] = 1.0f, dA[n][j] = 0.0f;
            }
            float *part_B = dB_part + ((size_t)b * tiles + tile) * length * n_state;
            float *part_C = dC_part + ((size_t)b * tiles + tile) * length * n_state;
            for (int t = length - 1; t >= 0; --t) {
                const size_t row = (size_t)b * length + t;
                const float *dy_t = dy + row * dim + d0, *dt_t = dt + row * dim + d0;
                const float *dtx_t = dtx + row * dim + d0;
                float grad_dt[TILE] = {0}, grad_dtx[TILE] = {0};
                for (int n = 0; n < n_state; ++n) {
                    const float b_n = B[row * n_state + n], c_n = C[row * n_state + n];
                    const float *a = A + (size_t)n * dim + d0, *a2 = A2 + (size_t)n * dim + d0;
                    const float *current = history + (row * n_state + n) * dim + d0;
                    const float *previous = t > 0 ? history + ((row - 1) * n_state + n) * dim + d0
                                                  : h0 + ((size_t)b * n_state + n) * dim + d0;
                    float *gn = g[n], *nd = next_decay[n], *dAn = dA[n];
                    float grad_b = 0.0f, grad_c = 0.0f;
                    for (int j = 0; j < width; ++j) {
                        const float gv = c_n * dy_t[j] + nd[j] * gn[j];
                        const float decay = exp2f(dt_t[j] * a2[j]);
                        const float log_decay_grad = gv * previous[j] * decay;
                        gn[j] = gv;
                        nd[j] = decay;
                        grad_dt[j] += log_decay_grad * a[j];
                        dAn[j] += log_decay_grad * dt_t[j];
                        grad_dtx[j] += gv * b_n;
                        grad_b += gv * dtx_t[j];
                        grad_c += dy_t[j] * current[j];
                    }
                    part_B[(size_t)t * n_state + n] = grad_b;
                    part_C[(size_t)t * n_state + n] = grad_c;
                }
                memcpy(d_dt + row * dim + d0, grad_dt, width * sizeof(float));
                memcpy(d_dtx + row * dim + d0, grad_dtx, width * sizeof(float));
            }
            for (int n = 0; n < n_state; ++n) {
                float *out = d_h0 + ((size_t)b * n_state + n) * dim + d0;
                for (int j = 0; j < width; ++j) out[j] = next_decay[n][j] * g[n][j];
                memcpy(dA_part + ((size_t)b * n_state + n) * dim + d0, dA[n], width * sizeof(float));
            }
        }
    }
}
