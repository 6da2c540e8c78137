/**
 * A broker that serves until Ctrl-C or SIGTERM: TLS only, and only for the users of a Mosquitto
 * password file (make one with `mosquitto_passwd -c passwords alice`). `start()` reads the password
 * file (a bad one rejects with PasswordFileError) and binds; `serveForever()` resolves once
 * `stop()` was called.
 *
 *   bun examples/broker-tls.ts [CERT KEY PASSWORD_FILE [PORT]]
 *
 * Each argument may come from the environment instead: MQTT_CERT, MQTT_KEY, MQTT_PASSWORD_FILE
 * and MQTT_PORT (default 8883; 0 = any free port). Then, for example:
 *   mosquitto_sub --cafile ca.crt -h localhost -p 8883 -u alice -P secret -t '#' -v
 * (In your own project, import from "mqtttools" instead of "../index".)
 */
import { Broker } from "../index";

const [, , cert = process.env.MQTT_CERT, key = process.env.MQTT_KEY, passwordFile = process.env.MQTT_PASSWORD_FILE, port = process.env.MQTT_PORT ?? "8883"] = process.argv;
if (!cert || !key || !passwordFile) {
  console.error("usage: bun examples/broker-tls.ts CERT KEY PASSWORD_FILE [PORT] (or MQTT_CERT, MQTT_KEY, MQTT_PASSWORD_FILE, MQTT_PORT)");
  process.exit(2);
}

const broker = new Broker(
  [["0.0.0.0", Number(port), { cert: Bun.file(cert), key: Bun.file(key) }]],
  { passwordFile, allowAnonymous: false, logLevel: "info", logger: (line) => console.error(line) },
);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.log(`${signal}: stopping.`);
    void broker.stop();
  });
}

const [bound] = await broker.start(); // reads the password file, binds the port
console.log(`Listening on port ${bound} (TLS, password file ${passwordFile}).`);
await broker.serveForever(); // resolves once stop() was called
console.log("Stopped.");
