#include "control/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace scalegate::control {
namespace {

// Closes the descriptor on every path out of a function.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  // Closes now and reports close(2)'s errno (0 when fine): on some file systems a failed
  // write only shows up here.
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

std::string directoryOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? std::string(".") : dir;
}

}  // namespace

Result<std::string> readWholeFile(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int err = errno;
    if (err == ENOENT) return notFound(path + ": does not exist");
    return errnoStatus("open " + path, err);
  }
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errnoStatus("read " + path, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status replaceFileAtomically(const std::string& path, std::string_view contents) {
  const std::string tmp = path + ".tmp";
  FileDescriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return errnoStatus("create " + tmp, errno);
  auto fail = [&](const std::string& what, int err) {
    fd.close();
    ::unlink(tmp.c_str());
    return errnoStatus(what + " " + tmp, err);
  };
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write", errno);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail("fsync", errno);
  if (int err = fd.close(); err != 0) {
    ::unlink(tmp.c_str());
    return errnoStatus("close " + tmp, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return errnoStatus("rename " + tmp + " to " + path, err);
  }
  // The rename is durable only once the directory entry is on disk.
  const std::string dir = directoryOf(path);
  FileDescriptor dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0) return errnoStatus("open directory " + dir + " (to fsync it)", errno);
  if (::fsync(dfd.get()) != 0) return errnoStatus("fsync directory " + dir, errno);
  return Status::ok();
}

namespace {

int64_t stateInteger(const nlohmann::json& j, int64_t lo, int64_t hi) {
  using Json = nlohmann::json;
  if (!j.is_number_integer()) {
    throw Json::type_error::create(302, std::string("expected an integer, but is ") + j.type_name(),
                                   &j);
  }
  // An unsigned above INT64_MAX is out of every range asked for here.
  const bool too_big = j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(hi);
  if (too_big || j.get<int64_t>() < lo || j.get<int64_t>() > hi) {
    throw Json::out_of_range::create(
        406, j.dump() + " is outside " + std::to_string(lo) + ".." + std::to_string(hi), &j);
  }
  return j.get<int64_t>();
}

}  // namespace

uint32_t stateUint32(const nlohmann::json& j) {
  return static_cast<uint32_t>(stateInteger(j, 0, UINT32_MAX));
}

int64_t stateMillis(const nlohmann::json& j) {
  return stateInteger(j, -kMaxStateMillis, kMaxStateMillis);
}

std::string stateFilePath(const config::Config& cfg) {
  if (!cfg.admin.state_file.empty()) return cfg.admin.state_file;
  std::filesystem::path p(cfg.path);
  return (p.parent_path() / (p.stem().string() + ".state.json")).string();
}

}  // namespace scalegate::control
