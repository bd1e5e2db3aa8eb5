// Sends HL7 v2 messages with Medplum's MLLP client (@medplum/hl7 Hl7Client) and prints each ACK as a JSON
// line. Usage: node send_hl7.mjs PORT FILE...  (one connection; each message waits for its ACK)
import { readFileSync } from 'node:fs';
import { Hl7Message } from '@medplum/core';
import { Hl7Client } from '@medplum/hl7';

const [port, ...files] = process.argv.slice(2);
const client = new Hl7Client({ host: '127.0.0.1', port: Number(port) });
try {
  for (const file of files) {
    const text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '').replace(/\r\n|\n/g, '\r');
    const ack = await client.sendAndWait(Hl7Message.parse(text));
    const msa = ack.getSegment('MSA');
    console.log(JSON.stringify({ file, code: msa.getField(1).toString(), control: msa.getField(2).toString(), ack: ack.toString() }));
  }
} finally {
  await client.close();
}
