// gear's example .jar application: run as `java -cp hello.jar Hello ARGS`.
// It prints its executor id and arguments, then keeps running until stopped.
public class Hello {
    public static void main(String[] args) throws Exception {
        String id = System.getenv("GEAR_EXECUTOR_ID");
        System.out.println("hello from java executor " + id + " with args " + String.join(" ", args));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> System.out.println("hello: shutting down")));
        while (true) {
            Thread.sleep(5000);
            System.out.println("hello: java executor " + id + " still running");
        }
    }
}
