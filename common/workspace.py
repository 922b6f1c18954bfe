"""Workspace confinement: every file the tools touch, or the indexer reads, lies inside WORKSPACE_DIR.

How a path is checked, in order:

1. Lexically: no NUL byte, no over-long path or name, no `..` component; an
   absolute path must name something under the workspace root.
2. While opening: the path is walked one component at a time from a file
   descriptor of the root (`openat` with `O_NOFOLLOW`). A component that is a
   symlink is followed only when its fully resolved target is inside the root;
   missing directories are created the same way (for writes).
3. After opening: the opened descriptor's real path (`/proc/self/fd/N`) must be
   inside the root, so a symlink swapped in after the check (a TOCTOU race)
   is still refused before one byte is read or written.

Only regular files are read or written (FIFOs, sockets and device files are
refused without being opened for I/O); files over the size limit are refused;
binary files are reported as binary instead of being decoded. Nothing is ever
written inside git metadata (a `.git` file or directory at any depth, by name
or through a symlink): git runs programs named in `.git/config`, so a write
there would let the model run code.

Two kinds of regular file are never read (nor written), so their content never
reaches the model, an index or a search result:

- secret files, by name (`VICTOR_SECRET_FILES`, default `SECRET_FILES`), the
  name the path gives and the name of the file it really opens (a symlink
  called notes.txt that leads to .env is refused too);
- hard links (a regular file with more than one link): a hard link made
  inside the workspace to a file outside it passes every path check, since it
  is the file itself.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MAX_PATH_LENGTH = 4096
MAX_NAME_LENGTH = 255
BINARY_SNIFF_BYTES = 8192
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
GIT_METADATA = ".git"
# Names of files that hold credentials; VICTOR_SECRET_FILES replaces the list.
SECRET_FILES = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ed25519*",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".git-credentials",
)


class WorkspaceError(Exception):
    """A path is refused or cannot be used; `code` names the reason for callers and tests."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FileContent:
    """A regular file read whole: its text, or None when it is binary."""

    path: str
    size: int
    text: str | None

    @property
    def binary(self) -> bool:
        return self.text is None


@dataclass(frozen=True)
class FileState:
    """What changes when a file changes; keys the result cache."""

    size: int
    mtime_ns: int
    inode: int


def starts_binary(head: bytes) -> bool:
    """A NUL byte in the first BINARY_SNIFF_BYTES: the sniff that needs only a file's start."""
    return b"\0" in head[:BINARY_SNIFF_BYTES]


def is_binary(data: bytes) -> bool:
    """Binary when the start holds a NUL byte (`starts_binary`) or the bytes are not UTF-8."""
    if starts_binary(data):
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def is_utf8_name(name: str) -> bool:
    """Whether a name read from the file system is UTF-8. Python keeps other bytes as lone surrogates,
    which no JSON answer, CloudEvent or store can carry: walks leave such names out and report them."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(name: str) -> str:
    """A name that is not UTF-8, printable: each byte that is not UTF-8 as `\\xNN` (to read, not to use)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


class Workspace:
    """The confined root; every method refuses paths that leave it with `WorkspaceError`."""

    def __init__(
        self, root: Path, *, max_file_size: int, secret_files: tuple[str, ...] = SECRET_FILES
    ) -> None:
        self.root = os.path.realpath(root)
        self.max_file_size = max_file_size
        self.secret_files = secret_files

    # ------------------------------------------------------------ what is never read

    def is_secret(self, name: str) -> bool:
        """Whether a file name matches the secret-file list (case-insensitively)."""
        folded = name.casefold()
        return any(fnmatch.fnmatchcase(folded, pattern.casefold()) for pattern in self.secret_files)

    def refusal(self, shown: str, name: str, info: os.stat_result) -> WorkspaceError | None:
        """Why the regular file `name` (stat `info`) must not be read, or None; walks skip these."""
        if self.is_secret(name):
            return WorkspaceError(
                "secret_file",
                f"{shown!r} is a secret file (its name matches VICTOR_SECRET_FILES); the tools never read it",
            )
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            return WorkspaceError(
                "hard_link",
                f"{shown!r} has {info.st_nlink} hard links and may be a file from outside the workspace; "
                "it is not read",
            )
        return None

    # ------------------------------------------------------------ path checks

    def contains(self, real_path: str) -> bool:
        return real_path == self.root or real_path.startswith(self.root.rstrip(os.sep) + os.sep)

    def relative(self, path: str) -> str:
        """The path relative to the root ("." for the root), checked lexically."""
        if not isinstance(path, str):
            raise WorkspaceError("invalid_path", "the path must be a string")
        if "\0" in path:
            raise WorkspaceError("invalid_path", "the path contains a NUL byte")
        if not is_utf8_name(path):
            raise WorkspaceError(
                "invalid_path",
                f"the path {shown_name(path)!r} is not valid UTF-8; the tools only open UTF-8 names",
            )
        if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_LENGTH:
            raise WorkspaceError("invalid_path", f"the path is longer than {MAX_PATH_LENGTH} bytes")
        if os.path.isabs(path):
            normal = os.path.normpath(path)
            if not self.contains(normal):
                raise WorkspaceError("outside_workspace", f"{path!r} is outside the workspace")
            path = os.path.relpath(normal, self.root)
        parts = [part for part in path.split("/") if part not in ("", ".")]
        for part in parts:
            if part == "..":
                raise WorkspaceError(
                    "outside_workspace", f"{path!r} uses '..'; paths must stay in the workspace"
                )
            if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_LENGTH:
                raise WorkspaceError(
                    "invalid_path", f"a name in {path!r} is longer than {MAX_NAME_LENGTH} bytes"
                )
        return "/".join(parts) or "."

    def _refuse_git_metadata(self, real_path: str, shown: str) -> None:
        """Refuse a write whose real location is a `.git` entry or lies below one (any case)."""
        if not self.contains(real_path):
            return  # leaving the root is refused, with its own code, where the path is opened
        inner = os.path.relpath(real_path, self.root)
        if any(part.casefold() == GIT_METADATA for part in inner.split(os.sep)):
            raise WorkspaceError(
                "git_metadata", f"{shown!r} is inside git metadata (.git), which the tools never write"
            )

    def _verify(self, fd: int, shown: str) -> None:
        """Refuse an opened descriptor whose real path is outside the root (symlink swapped in)."""
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            # Without /proc the descriptor cannot be checked; refusing is the safe answer.
            os.close(fd)
            raise WorkspaceError("outside_workspace", f"cannot verify where {shown!r} leads") from None
        if not self.contains(real):
            os.close(fd)
            raise WorkspaceError("outside_workspace", f"{shown!r} leads outside the workspace")

    def _follow(self, parts: list[str], flags: int, mode: int, shown: str) -> int:
        """Open a symlinked component by its resolved target, only when that target is inside."""
        target = os.path.realpath(os.path.join(self.root, *parts))
        if not self.contains(target):
            raise WorkspaceError(
                "outside_workspace", f"{shown!r} is a symlink that leads outside the workspace"
            )
        return os.open(target, flags | os.O_NOFOLLOW, mode)

    def _step(
        self, dir_fd: int, parts: list[str], flags: int, shown: str, *, create_dir: bool, mode: int
    ) -> int:
        name = parts[-1]
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            if not create_dir:
                if flags & os.O_CREAT:
                    return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
                raise WorkspaceError("not_found", f"{shown!r} does not exist") from None
            os.mkdir(name, 0o755, dir_fd=dir_fd)
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            return self._follow(parts, flags & ~os.O_CREAT, mode, shown)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            raise WorkspaceError("special_file", f"{shown!r} is not a regular file or directory")
        return os.open(name, (flags & ~os.O_CREAT) | os.O_NOFOLLOW, mode, dir_fd=dir_fd)

    def _open(self, rel: str, flags: int, *, mode: int = 0o644, create_dirs: bool = False) -> int:
        """A descriptor for `rel` opened inside the root with `flags`, verified after opening."""
        parts = [] if rel == "." else rel.split("/")
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for index in range(len(parts)):
                last = index == len(parts) - 1
                step_flags = flags if last else _DIR_FLAGS
                next_fd = self._step(
                    fd,
                    parts[: index + 1],
                    step_flags,
                    rel,
                    create_dir=create_dirs and (not last or step_flags == _DIR_FLAGS),
                    mode=mode,
                )
                os.close(fd)
                fd = -1
                self._verify(next_fd, rel)
                fd = next_fd
        except WorkspaceError:
            if fd >= 0:
                os.close(fd)
            raise
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise _os_error(exc, rel) from None
        return fd

    # ------------------------------------------------------------ operations

    @contextmanager
    def open_directory(self, path: str) -> Iterator[tuple[int, str]]:
        """A verified descriptor of a directory inside the root, and its relative path."""
        rel = self.relative(path)
        fd = self._open(rel, _DIR_FLAGS)
        try:
            yield fd, rel
        finally:
            os.close(fd)

    def state(self, path: str) -> FileState:
        """Size, mtime and inode of a regular file inside the root."""
        rel = self.relative(path)
        fd = self._open(rel, _READ_FLAGS)
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        return FileState(info.st_size, info.st_mtime_ns, info.st_ino)

    def read(self, path: str) -> FileContent:
        """A regular file inside the root, whole; refused when over the size limit."""
        rel = self.relative(path)
        fd = self._open(rel, _READ_FLAGS)
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise WorkspaceError("is_directory", f"{rel!r} is a directory; use list_directory")
            if not stat.S_ISREG(info.st_mode):
                raise WorkspaceError("special_file", f"{rel!r} is not a regular file")
            real_name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
            for name in (rel.rsplit("/", 1)[-1], real_name):
                if (refused := self.refusal(rel, name, info)) is not None:
                    raise refused
            if info.st_size > self.max_file_size:
                raise WorkspaceError(
                    "too_large", f"{rel!r} is {info.st_size} bytes, over the {self.max_file_size}-byte limit"
                )
            data = read_all(fd, self.max_file_size)
        finally:
            os.close(fd)
        if is_binary(data):
            return FileContent(rel, len(data), None)
        return FileContent(rel, len(data), data.decode("utf-8"))

    def write(self, path: str, data: bytes) -> str:
        """Create or replace a regular file inside the root (parents created); returns its relative path.

        The bytes go to a temporary file beside the target, which is then renamed over it, so a
        crash never leaves a half-written file. Both happen relative to a verified descriptor of
        the parent directory, and a rename replaces a directory entry without following it, so
        a symlink swapped in at the last moment is replaced, never written through.
        """
        rel = self.relative(path)
        if rel == ".":
            raise WorkspaceError("is_directory", "the workspace root is a directory, not a file")
        if len(data) > self.max_file_size:
            raise WorkspaceError(
                "too_large", f"{len(data)} bytes is over the {self.max_file_size}-byte limit"
            )
        # Before any parent directory is created; checked again where the write really lands.
        self._refuse_git_metadata(os.path.realpath(os.path.join(self.root, rel)), rel)
        for name in (
            rel.rsplit("/", 1)[-1],
            os.path.basename(os.path.realpath(os.path.join(self.root, rel))),
        ):
            if self.is_secret(name):
                raise WorkspaceError(
                    "secret_file",
                    f"{rel!r} is a secret file (its name matches VICTOR_SECRET_FILES); not written",
                )
        parent, _, name = rel.rpartition("/")
        dir_fd = self._open(parent or ".", _DIR_FLAGS, create_dirs=True)
        try:
            dir_fd, name = self._write_target(dir_fd, name, rel)
            self._refuse_git_metadata(os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), name), rel)
            existing = self._existing_mode(dir_fd, name, rel)
            temporary = f".{name[:200]}.{uuid.uuid4().hex[:12]}.victor-tmp"
            try:
                fd = os.open(
                    temporary,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    existing if existing is not None else 0o644,
                    dir_fd=dir_fd,
                )
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(temporary, dir_fd=dir_fd)
                raise
        except OSError as exc:
            raise _os_error(exc, rel) from None
        finally:
            os.close(dir_fd)
        return rel

    def _write_target(self, dir_fd: int, name: str, rel: str) -> tuple[int, str]:
        """The directory and name to write: a symlink inside the root is written through to its target."""
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return dir_fd, name
        if not stat.S_ISLNK(info.st_mode):
            return dir_fd, name
        target = os.path.realpath(os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), name))
        if not self.contains(target):
            raise WorkspaceError(
                "outside_workspace", f"{rel!r} is a symlink that leads outside the workspace"
            )
        target_dir = os.open(os.path.dirname(target), _DIR_FLAGS)
        self._verify(target_dir, rel)
        os.close(dir_fd)
        return target_dir, os.path.basename(target)

    def _existing_mode(self, dir_fd: int, name: str, rel: str) -> int | None:
        """The permission bits of the file being replaced (kept), or None for a new file."""
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(info.st_mode):
            raise WorkspaceError("is_directory", f"{rel!r} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise WorkspaceError("special_file", f"{rel!r} is not a regular file")
        return stat.S_IMODE(info.st_mode)


class GitIgnore:
    """The `.gitignore` rules of a workspace, per directory, read once each (git's own pattern rules,
    with `pathspec`). The tools' walks and the indexer skip what git would ignore, and `.git` itself.

    Each `.gitignore` is read through the workspace's confinement, so one that is a symlink leading
    outside is not followed, and one that cannot be read counts as absent.
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._specs: dict[str, Any] = {}

    def _spec(self, directory: str) -> Any:
        if directory not in self._specs:
            import pathspec

            spec = None
            try:
                content = self.workspace.read(f"{directory}/.gitignore" if directory else ".gitignore")
            except WorkspaceError:
                content = None
            if content is not None and content.text is not None:
                spec = pathspec.GitIgnoreSpec.from_lines(content.text.splitlines())
            self._specs[directory] = spec
        return self._specs[directory]

    def ignored(self, relative: PurePosixPath, is_dir: bool = False) -> bool:
        """Whether the .gitignore files exclude the workspace-relative path (a deeper one decides last)."""
        verdict = False
        parts = relative.parts
        for depth in range(len(parts)):
            spec = self._spec("/".join(parts[:depth]))
            if spec is not None:
                rest = "/".join(parts[depth:]) + ("/" if is_dir else "")
                result = spec.check_file(rest)
                if result.include is not None:
                    verdict = bool(result.include)
        return verdict

    def ignored_path(self, relative: PurePosixPath) -> bool:
        """Ignored itself or through any ignored parent directory; anything inside `.git` too."""
        if GIT_METADATA in relative.parts:
            return True
        for depth in range(1, len(relative.parts)):
            if self.ignored(PurePosixPath(*relative.parts[:depth]), is_dir=True):
                return True
        return self.ignored(relative)


def read_all(fd: int, limit: int) -> bytes:
    """Read at most `limit` bytes from `fd` (a file may grow while being read)."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _os_error(exc: OSError, rel: str) -> WorkspaceError:
    if exc.errno == errno.ENOENT:
        return WorkspaceError("not_found", f"{rel!r} does not exist")
    if exc.errno == errno.ENOTDIR:
        return WorkspaceError("not_a_directory", f"a parent of {rel!r} is not a directory")
    if exc.errno == errno.EISDIR:
        return WorkspaceError("is_directory", f"{rel!r} is a directory")
    if exc.errno == errno.ELOOP:
        return WorkspaceError("outside_workspace", f"{rel!r} is a symlink that cannot be followed")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return WorkspaceError("permission_denied", f"permission denied for {rel!r}")
    if exc.errno == errno.ENAMETOOLONG:
        return WorkspaceError("invalid_path", f"{rel!r} is too long")
    return WorkspaceError("io_error", f"{rel!r}: {os.strerror(exc.errno or 0)}")
