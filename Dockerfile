# A Debian bookworm with this tree installed, built and tested: README.md's
# quick start, command for command. The RUN lines must be that block's
# commands, in order (make fresh-check checks it, then runs the same
# commands in a fresh minimal Debian of its own).
#
#   docker build -t progressive-servers .
#   docker run --rm -it progressive-servers     a shell in the built tree
#
# .devcontainer/devcontainer.json builds this image for "Reopen in
# Container". On Apple Silicon it is an arm64 Debian; elsewhere x86-64.
FROM debian:bookworm

WORKDIR /src
# The package list first, alone, so that a change to the sources does not
# download the packages again.
COPY tools/deps.sh tools/
RUN ./tools/deps.sh
COPY . .
RUN make demo
RUN make test

CMD ["bash"]
