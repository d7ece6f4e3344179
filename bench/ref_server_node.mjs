// Reference poetry server for the benchmark: a minimal Node `net` server.
//
//   node ref_server_node.mjs POEM_FILE [NUM_BYTES DELAY_SECONDS]
//
// Fast mode: socket.end(poem). Slow mode: the plain shape, one interval per client.
import fs from "node:fs";
import net from "node:net";

const [file, numBytesText, delayText] = process.argv.slice(2);
const poem = fs.readFileSync(file);
const numBytes = Number(numBytesText ?? 10);
const delayMs = Number(delayText ?? 0) * 1000;

const server = net.createServer((socket) => {
  socket.on("error", () => {});
  if (delayMs === 0) {
    socket.end(poem);
    return;
  }
  let offset = 0;
  const send = () => {
    socket.write(poem.subarray(offset, offset + numBytes));
    offset += numBytes;
    if (offset >= poem.length) {
      clearInterval(timer);
      socket.end();
    }
  };
  const timer = setInterval(send, delayMs);
  socket.on("close", () => clearInterval(timer));
  send();
});
server.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, () => {
  console.log(`Serving ${file} on 127.0.0.1:${server.address().port}.`);
});
