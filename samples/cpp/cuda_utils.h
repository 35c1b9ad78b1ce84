// CUDA runtime helpers of the sample: a checking macro and RAII owners for device memory, pinned
// host memory and a stream. Needs only the CUDA runtime headers (no TensorRT).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

namespace mq_sample {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, char const* call, char const* file, int line) {
    throw std::runtime_error(std::string("CUDA error: ") + call + " returned " + cudaGetErrorName(status) + " (" +
                             cudaGetErrorString(status) + ") at " + file + ":" + std::to_string(line));
}

}  // namespace mq_sample

// Every CUDA runtime call goes through this: a failure throws with the call, the error and the line.
#define MQ_CUDA_CHECK(call)                                                         \
    do {                                                                            \
        cudaError_t const mq_status_ = (call);                                      \
        if (mq_status_ != cudaSuccess) {                                            \
            ::mq_sample::throw_cuda_error(mq_status_, #call, __FILE__, __LINE__);   \
        }                                                                           \
    } while (0)

namespace mq_sample {

// Move-only owner of a cudaMalloc allocation (at least one byte, so the address is never null).
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t bytes) : mBytes(bytes) {
        MQ_CUDA_CHECK(cudaMalloc(&mPtr, std::max<std::size_t>(bytes, 1)));
    }
    ~DeviceBuffer() { reset(); }
    DeviceBuffer(DeviceBuffer&& other) noexcept
        : mPtr(std::exchange(other.mPtr, nullptr)), mBytes(std::exchange(other.mBytes, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
        if (this != &other) {
            reset();
            mPtr = std::exchange(other.mPtr, nullptr);
            mBytes = std::exchange(other.mBytes, 0);
        }
        return *this;
    }
    DeviceBuffer(DeviceBuffer const&) = delete;
    DeviceBuffer& operator=(DeviceBuffer const&) = delete;

    void* get() const noexcept { return mPtr; }
    std::size_t bytes() const noexcept { return mBytes; }

private:
    void reset() noexcept {
        if (mPtr != nullptr) {
            static_cast<void>(cudaFree(mPtr));  // a destructor cannot report; errors surface at the next call
            mPtr = nullptr;
        }
        mBytes = 0;
    }
    void* mPtr = nullptr;
    std::size_t mBytes = 0;
};

// Move-only owner of page-locked host memory (cudaMallocHost): asynchronous copies need it.
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    explicit PinnedBuffer(std::size_t bytes) : mBytes(bytes) {
        MQ_CUDA_CHECK(cudaMallocHost(&mPtr, std::max<std::size_t>(bytes, 1)));
    }
    ~PinnedBuffer() { reset(); }
    PinnedBuffer(PinnedBuffer&& other) noexcept
        : mPtr(std::exchange(other.mPtr, nullptr)), mBytes(std::exchange(other.mBytes, 0)) {}
    PinnedBuffer& operator=(PinnedBuffer&& other) noexcept {
        if (this != &other) {
            reset();
            mPtr = std::exchange(other.mPtr, nullptr);
            mBytes = std::exchange(other.mBytes, 0);
        }
        return *this;
    }
    PinnedBuffer(PinnedBuffer const&) = delete;
    PinnedBuffer& operator=(PinnedBuffer const&) = delete;

    void* get() const noexcept { return mPtr; }
    std::size_t bytes() const noexcept { return mBytes; }

private:
    void reset() noexcept {
        if (mPtr != nullptr) {
            static_cast<void>(cudaFreeHost(mPtr));
            mPtr = nullptr;
        }
        mBytes = 0;
    }
    void* mPtr = nullptr;
    std::size_t mBytes = 0;
};

// Owner of a non-blocking CUDA stream.
class CudaStream {
public:
    CudaStream() { MQ_CUDA_CHECK(cudaStreamCreateWithFlags(&mStream, cudaStreamNonBlocking)); }
    ~CudaStream() {
        if (mStream != nullptr) {
            static_cast<void>(cudaStreamDestroy(mStream));
        }
    }
    CudaStream(CudaStream const&) = delete;
    CudaStream& operator=(CudaStream const&) = delete;

    cudaStream_t get() const noexcept { return mStream; }
    void synchronize() const { MQ_CUDA_CHECK(cudaStreamSynchronize(mStream)); }

private:
    cudaStream_t mStream = nullptr;
};

}  // namespace mq_sample
