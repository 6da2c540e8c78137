/**
 * Request/response (MQTT 5.0): a requester sends each request with a Response Topic and
 * Correlation Data; the responder answers on that topic with the same correlation data, which
 * the requester uses to match answers to its pending requests. Both clients run in this script.
 *
 *   bun examples/request-response.ts [URL]
 *
 * URL defaults to mqtt://localhost:1883. (In your own project, import from "mqtttools".)
 */
import { Client, Message } from "../index";

const url = new URL(process.argv[2] ?? "mqtt://localhost:1883");
const host = url.hostname;
const port = Number(url.port || 1883);

// The responder: a service that adds two numbers.
await using responder = new Client(host, port, { subscriptions: ["service/add"] });
const answering: Promise<void>[] = []; // its answers until the broker acknowledged them
responder.onMessage = (request) => {
  if (request === null || request.responseTopic === undefined) return;
  const [a, b] = request.text.split("+").map(Number);
  answering.push(responder.publish(new Message(request.responseTopic, String(a! + b!), { qos: 1, correlationData: request.correlationData })));
};
await responder.start();

// The requester: answers come on a topic of its own, matched by correlation data.
await using requester = new Client(host, port);
const responseTopic = `replies/${requester.clientId}`;
const pending = new Map<string, (answer: string) => void>();
requester.onMessage = (response) => {
  const id = response?.correlationData === undefined ? "" : new TextDecoder().decode(response.correlationData);
  pending.get(id)?.(response!.text);
  pending.delete(id);
};
await requester.start();
await requester.subscribe(responseTopic, { qos: 1 });

async function request(question: string, id: string): Promise<string> {
  const answer = new Promise<string>((resolve) => pending.set(id, resolve));
  await requester.publish(new Message("service/add", question, { qos: 1, responseTopic, correlationData: id }));
  return answer;
}

// three requests at once; the answers may come in any order, the correlation data sorts them out
const questions = ["2+3", "40+2", "1000+337"];
const answers = await Promise.all(questions.map((q, i) => request(q, `request-${i + 1}`)));
questions.forEach((q, i) => console.log(`request-${i + 1}: ${q} = ${answers[i]}`));
// the requester may see an answer before the responder sees the broker's PUBACK for it: stopping
// the responder now would fail those publishes
await Promise.all(answering);
